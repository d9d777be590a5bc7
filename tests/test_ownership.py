"""One owner for each file's contents: only competition/artifacts.py spells the fold and submissions files'
names and the keys of done.json and config.json; every other module and script goes through its functions and
records."""
import re

from tests.conftest import REPO

OWNER = REPO / "competition" / "artifacts.py"
FILES = ("done.json", "config.json", "log.csv", "best.pt", "leaderboard.csv", "teacher.npz", "submission.csv")
# shell scripts that name a file only to test that it exists or to pack it, and read none of its contents:
# gpu_check.sh (its results archive; the members with a finished fold, without starting Python) and
# compare_recipes.sh (a setting with a done.json is skipped; its table reads them through artifacts)
BY_NAME_ONLY = {REPO / "scripts" / "gpu_check.sh", REPO / "scripts" / "compare_recipes.sh"}
SPELLED = re.compile("[\"'/](" + "|".join(re.escape(name) for name in FILES) + ")[\"']")  # a path, not a word
BY_KEY = re.compile(r"""\bdone(\[[^\]]*\])*(\[\s*["']|\.get\()""")  # done["key"], m.done[f].get(...)
CONFIG_BY_KEY = re.compile(r"""(\bconfig|_config\([^)]*\))(\[\s*["']|\.get\()""")  # config["k"], read_config(f).get(


def sources():
    for path in sorted([*(REPO / "competition").glob("*.py"), *(REPO / "scripts").glob("*")]):
        if path.is_file() and path != OWNER and path.suffix in (".py", ".sh"):
            yield path, path.read_text()


def code_lines(text: str):
    """Lines that are code: docstrings and comments may name a file to say what a module does."""
    in_doc = False
    for number, line in enumerate(text.splitlines(), 1):
        quotes, stripped = line.count('"""'), line.lstrip()
        if in_doc:
            in_doc = quotes % 2 == 0
        elif stripped.startswith('"""'):
            in_doc = quotes == 1
        elif not stripped.startswith("#"):
            yield number, line.split("  # ")[0]


def test_no_module_but_artifacts_spells_a_fold_or_submissions_file():
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path, text in sources() if path not in BY_NAME_ONLY
             for n, line in code_lines(text) if SPELLED.search(line)]
    assert not found, "\n".join(found)


def test_no_module_but_artifacts_reads_done_json_by_key():
    """done.json is read as artifacts.Done (attributes), never as a dict by key."""
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path, text in sources()
             for n, line in code_lines(text) if BY_KEY.search(line)]
    assert not found, "\n".join(found)


def test_no_module_but_artifacts_reads_config_json_by_key():
    """config.json is read as artifacts.RunConfig (attributes), never as a dict by key."""
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path, text in sources()
             for n, line in code_lines(text) if CONFIG_BY_KEY.search(line)]
    assert not found, "\n".join(found)


def test_the_checks_see_what_they_look_for():
    assert list(code_lines('x = 1\n"""doc: done.json"""\npath = d / "done.json"\n')) == \
        [(1, "x = 1"), (3, 'path = d / "done.json"')]
    assert SPELLED.search('d / "done.json"') and SPELLED.search('"$F/fold0/config.json"')
    assert not SPELLED.search('f"{x}: no done.json (interrupted)"')  # a message names it, opens nothing
    assert BY_KEY.search("done['val_acc']") and BY_KEY.search("m.done[f].get('best_epoch')")
    assert not BY_KEY.search("done.val_acc")
    assert CONFIG_BY_KEY.search('self.config["refit"] = 1') and CONFIG_BY_KEY.search("config.get('seed')")
    assert CONFIG_BY_KEY.search('artifacts.read_config(j.files)["epochs"]')
    assert CONFIG_BY_KEY.search('(artifacts.member_config(s, k).get("teacher") or {})')
    assert not CONFIG_BY_KEY.search("config.epochs") and not CONFIG_BY_KEY.search("kaggle_config(env)")
