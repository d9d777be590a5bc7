"""report.md's text: the sections and tables competition.report writes from the numbers it computed.

    python -m competition.report          # computes the numbers, draws the figures, then calls render(numbers)

Kept apart from competition.report so that the wording and layout of the report can change without touching
how a number is made, and the reverse. Everything here is a function of the numbers dict (report.json's
content, the local leaderboard's last rows and the class names included): it reads no file; no logits, no
models, no figures, and it imports no torch (a text renderer; `import competition` does not load the models).
The reference points (2013 winner, humans) live here, as they are only ever printed; the study's own reported
results come with each model's numbers (its model file's facts).
"""
import numpy as np


WINNER_PRIVATE = 0.7116  # the 2013 winner's PrivateTest score (Tang, CNN with a linear-SVM loss)
HUMAN = 0.65  # human accuracy on FER2013, about 65% +- 5% (Goodfellow et al. 2013)
MISTAKES_PNG = "confident_mistakes.png"  # dataset images: must not be committed
JUDGE_EPOCHS = 10  # fewer epochs than this: the report says the model was not trained long enough to judge


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def spread(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def section_missing(n: dict) -> str:
    if not n["missing"]:
        return f"## Missing\n\nNothing: every model listed ran all {n['k']} folds."
    return "## Missing\n\n" + "\n".join(f"- {line}" for line in n["missing"])


def judged(m: dict, claim: str) -> str:
    """The study's claim, or a plain warning when the model ran too few epochs to be compared with it."""
    epochs = min(m.get("epochs_run") or [JUDGE_EPOCHS])
    return claim if epochs >= JUDGE_EPOCHS else f"not trained long enough to judge: {epochs} epoch{'s' * (epochs != 1)} (study: {claim})"


def ensemble_how(e: dict) -> str:
    """What an ensemble row combined: its weights, or the stacker, and which members' refits were mixed in."""
    how = ("a logistic regression on the members' fold-averaged TTA logits (its OOF by cross-validation)"
           if e["weights"] is None else "weighted mean of the members' fold-averaged TTA logits, weights "
           + " / ".join(f"{w:.2f}" for w in e["weights"]))
    refits = e.get("refits") or []
    return how + (f"; test logits with the refits of {', '.join(refits)} mixed in" if refits else "")


def study_rows(n: dict) -> list[list]:
    """The study's models (and other members), then the ensembles, then the reference points."""
    rows = []
    for name, m in n["models"].items():
        arch = m.get("arch", name)
        other = "not in the study" if arch == name else f"another member of {arch} (seed or setting)"
        label, changed, claim = m.get("study") or ("", other, "-")
        rows.append([label, name, spread(m["train_acc"], m["train_acc_std"]), spread(m["val_acc"], m["val_acc_std"]),
                     f"{100 * m['gap']:+.2f} pts", pct(m["oof"]), pct(m["public"]), pct(m["private"]),
                     judged(m, claim), changed])
    rows += [[e["step"], " + ".join(e["models"]), "-", pct(e["oof"]), "-", pct(e["oof"]), pct(e["public"]),
              pct(e["private"]), "-", ensemble_how(e)] for e in n["ensemble"]]
    return rows + [["2013 winner", "", "", "", "", "", "", pct(WINNER_PRIVATE), "", "Kaggle private leaderboard"],
                   ["Human", "", "", "", "", "", "", f"about {HUMAN:.0%}", "", "Goodfellow et al. 2013"]]


def section_study(n: dict) -> str:
    header = ["", "model", "train acc", "val acc", "gap", "OOF", "PublicTest", "PrivateTest", "study reported",
              "what changed"]
    private = [(m["private"], name) for name, m in n["models"].items() if m["private"] is not None]
    private += [(e["private"], e["step"]) for e in n["ensemble"] if e["private"] is not None]
    best = (f"Best PrivateTest here: {pct(max(private)[0])} ({max(private)[1]})" if private else
            "PrivateTest labels are unknown here, so only OOF and PublicTest compare")
    return ("## The study, measured\n\nTrain accuracy: the best weights on each fold's clean (un-augmented) "
            "training rows; validation: the fold's held-out rows with TTA; mean ± std over folds (done.json). "
            "Gap = train - val, the overfitting. An ensemble has no train accuracy: its val column is its OOF.\n\n"
            + md_table(header, study_rows(n)) + f"\n\n{best}; the 2013 winner scored {pct(WINNER_PRIVATE)}, "
            f"humans about {HUMAN:.0%}.")


def minutes(s: dict) -> str:
    """'12.3 (cuda)', or '12.5 (cpu 0.2, cuda 12.3)': a row's training minutes and where they were spent."""
    def amount(m: float | None) -> str:
        return "n/a" if m is None else f"{m:.1f}" if m >= 1 else f"{m:.2f}"
    if len(s["devices"]) == 1:
        return f"{amount(s['minutes'])} ({s['devices'][0]})"
    return f"{amount(s['minutes'])} (" + ", ".join(f"{d} {amount(m)}" for d, m in s["minutes_by_device"].items()) + ")"


def ladder_row(s: dict) -> list:
    oof = pct(s["oof"]) + (f" ({s['oof_note']})" if s.get("oof_note") else "")
    name = s["step"] + (f" ({s['teacher']})" if s.get("teacher") else "")
    return [name, oof, s["oof_rows"], pct(s["public"]), pct(s["private"]), minutes(s)]


def section_ladder(n: dict) -> str:
    return ("## The ladder: what each step buys\n\nOne fold is scored on its own validation rows only, later "
            "steps on the rows of every complete fold. The first two steps use plain logits (no TTA). "
            "'+ seeds' averages the logits of a member's other seeds (`<member>.s<N>`, every fold finished) with "
            "equal weights; '+ refit' mixes each member's refit (trained on every Training row) into its test "
            "logits at the stated share: a refit has no OOF predictions, so that row's OOF is the folds'. The "
            "ensembles combine every complete member, refits mixed in. A distilled student is never in an "
            "ensemble: it stands alone, with no OOF when it has only a refit, and an optimistic one when it has "
            "folds (its soft targets came from a teacher whose folds saw those labels). 'n/a': the test labels "
            "are unknown.\n\n"
            "Training minutes: the training-loop seconds in done.json (the sum of epoch times; inference, TTA and "
            "start-up excluded) of every fold, seed and refit run the step needs, counted in full at each step "
            "(an ensemble counts all its members' runs, a student its teacher's too), over 60. The device is "
            "where config.json says those runs ran, with each device's share where there are several: CPU "
            "minutes are not GPU minutes. 'n/a': a run's done.json has no seconds.\n\n"
            + md_table(["step", "OOF", "OOF rows", "PublicTest", "PrivateTest", "training minutes (device)"],
                       [ladder_row(s) for s in n["ladder"]]))


def disgust_line(m: dict, n: dict) -> str:
    c = m["per_class"]
    d = n["classes"].index("Disgust")
    others = [f1 for i, f1 in enumerate(c["f1"]) if i != d]
    return (f"Disgust has {n['disgust_train']} of {n['train_rows']} training images "
            f"({n['disgust_train'] / n['train_rows']:.1%}): its OOF precision is {c['precision'][d]:.2f}, recall "
            f"{c['recall'][d]:.2f} and F1 {c['f1'][d]:.2f}, against a mean F1 of {np.mean(others):.2f} over the "
            f"other six classes.")


def section_model(name: str, m: dict, n: dict) -> str:
    folds = md_table(["fold", "best epoch", "train acc", "val acc", "gap"],
                     [[f, e, pct(t), pct(v), f"{100 * (t - v):+.2f} pts"] for f, e, t, v in
                      zip(m["folds"], m["best_epoch"], m["train_acc_folds"], m["val_acc_folds"])])
    c = m["per_class"]
    classes = md_table(["class", "OOF rows", "precision", "recall", "F1"],
                       [[cls, c["support"][i], f"{c['precision'][i]:.2f}", f"{c['recall'][i]:.2f}", f"{c['f1'][i]:.2f}"]
                        for i, cls in enumerate(n["classes"])])
    return "\n\n".join([f"### {name} ({(m.get('study') or ('',))[0]})",
                        f"{m['params']:,} parameters, {m['macs'] / 1e6:.2f} M multiply-adds per 48x48 image. "
                        f"OOF accuracy with TTA {pct(m['oof'])}.", folds,
                        f"![learning curves of {name}](curves_{name}.png)",
                        f"![confusion matrix of {name}](confusion_{name}.png)", classes, disgust_line(m, n)])


def section_mistakes(n: dict) -> str:
    classes = n["classes"]
    lines = [f"- Training row {x['row']}: true {classes[x['true']]}, predicted {classes[x['pred']]} "
             f"({x['confidence']:.0%})" for x in n["mistakes"]["images"]]
    return "\n".join([f"## Most confidently wrong validation images ({n['mistakes']['source']})", "",
                      f"![confident mistakes]({MISTAKES_PNG})", "",
                      f"`{MISTAKES_PNG}` is made of FER2013 images: it is not to be committed.", ""] + lines)


def section_leaderboard(n: dict) -> str:
    rows = n.get("leaderboard") or []
    if not rows:
        return "## Submissions\n\nNo submissions yet (`./run.sh ensemble` writes them)."
    return ("## Submissions\n\nThe last rows of the local leaderboard (submissions/), as competition.ensemble "
            "wrote them.\n\n" + md_table(list(rows[0]), [list(row.values()) for row in rows]))


def render(n: dict) -> str:
    head = (f"# FER2013: the study, regenerated\n\nGenerated {n['generated']} by `python -m competition.report` "
            f"from {n['k']} folds of {n['train_rows']} Training rows; nothing was retrained. Every number and "
            f"figure is computed from the saved logits and logs; report.json holds the tables' numbers.")
    models = ["## Per model\n\n" + "\n\n".join(section_model(name, m, n) for name, m in n["models"].items())]
    return "\n\n".join([head, section_missing(n), section_study(n), section_ladder(n), *models,
                        section_mistakes(n), section_leaderboard(n)]) + "\n"
