"""Pack the dataset cache into one compact file that travels to the GPU machine, and unpack it there.

    python3 scripts/pack_data.py pack   [--out gpu_data/fer2013.npz.xz] [--force]
    python3 scripts/pack_data.py unpack [--from gpu_data/fer2013.npz.xz] [--force]

The cache (data/fer2013.npz under the work folder, `competition.paths.cache_path()`) is 83 MB: over what
travels to the GPU machine (64 MiB at most). np.savez writes an uncompressed zip, so its
bytes hold the images' raw rows; xz with a delta filter of one image row (48 bytes: each pixel minus the one
above it) and LZMA2 at preset 9 extreme packs them losslessly to about two thirds (minutes to pack,
seconds to unpack). A sidecar `<pack>.json` holds the cache's sha256 and size: unpack checks the bytes it
made against it, and skips the work when the cache already holds those bytes; pack skips when the pack is
already of this cache. Unpack writes the cache atomically. A pack over 60 MiB is refused.

The pack folder gpu_data/ is git-ignored: never commit it, it is made of FER2013 images.
"""
import argparse
import hashlib
import json
import lzma
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from competition import paths  # noqa: E402
from competition.atomic import atomic_open, atomic_write_text  # noqa: E402
from competition.errors import UserError, run_command  # noqa: E402

DEFAULT_PACK = paths.REPO / "gpu_data" / "fer2013.npz.xz"
ROW = 48  # bytes in one image row: the delta filter's distance
FILTERS = [{"id": lzma.FILTER_DELTA, "dist": ROW}, {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
LIMIT = 60 * 2**20  # what may travel is 64 MiB, code and all


def sidecar(pack: Path) -> Path:
    return pack.with_name(pack.name + ".json")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def read_sidecar(pack: Path) -> dict | None:
    try:
        return json.loads(sidecar(pack).read_text())
    except (OSError, ValueError):
        return None


def pack(out: Path, force: bool) -> int:
    cache = paths.cache_path()
    if not cache.is_file():
        raise UserError(f"{cache}: no dataset cache to pack. Run `./run.sh download` "
                        f"(or `./run.sh download --from PATH`) first.")
    start = time.perf_counter()
    raw = cache.read_bytes()
    digest = sha256(raw)
    meta = read_sidecar(out)
    if not force and out.is_file() and meta and meta.get("sha256") == digest and meta.get("packed_size") == \
            out.stat().st_size:
        print(f"{out}: already a pack of {cache} ({mb(len(raw))} -> {mb(out.stat().st_size)}), kept; "
              f"--force packs again")
        return 0
    print(f"packing {cache} ({mb(len(raw))}): xz, delta {ROW} + LZMA2 preset 9 extreme (minutes)...", flush=True)
    packed = lzma.compress(raw, format=lzma.FORMAT_XZ, filters=FILTERS)
    seconds = time.perf_counter() - start
    if len(packed) > LIMIT:
        raise UserError(f"{out}: the pack would be {mb(len(packed))}, over the {mb(LIMIT)} that may travel to the "
                        f"GPU machine; nothing written. Bring a smaller cache (fewer rows) or another compressor.")
    with atomic_open(out) as f:
        f.write(packed)
    atomic_write_text(sidecar(out), json.dumps({"file": cache.name, "sha256": digest, "size": len(raw),
                                                "packed_size": len(packed), "filters": f"delta {ROW}, lzma2 9e"},
                                               indent=1) + "\n")
    print(f"{out}: {mb(len(raw))} -> {mb(len(packed))} ({len(packed) / len(raw):.1%}) in {seconds:.1f} s; "
          f"sha256 {digest[:16]}... in {sidecar(out).name}")
    return 0


def unpack(source: Path, force: bool) -> int:
    cache = paths.cache_path()
    if not source.is_file():
        raise UserError(f"{source}: no pack to unpack. Make it where the dataset cache is, with "
                        f"`python3 scripts/pack_data.py pack`, and bring its folder along (carry gpu_data).")
    start = time.perf_counter()
    meta = read_sidecar(source)
    if meta is None:
        print(f"warning: {sidecar(source)} is missing or unreadable: the bytes cannot be checked", file=sys.stderr)
    if not force and meta and cache.is_file() and cache.stat().st_size == meta.get("size") and \
            sha256(cache.read_bytes()) == meta.get("sha256"):
        print(f"{cache}: already holds the packed bytes (sha256 {meta['sha256'][:16]}...), kept; "
              f"checked in {time.perf_counter() - start:.1f} s")
        return 0
    try:
        raw = lzma.decompress(source.read_bytes(), format=lzma.FORMAT_XZ)
    except lzma.LZMAError as err:
        raise UserError(f"{source}: not a readable xz pack ({err}). Pack it again with "
                        f"`python3 scripts/pack_data.py pack --force`.") from err
    if meta and sha256(raw) != meta.get("sha256"):
        raise UserError(f"{source}: unpacks to bytes whose sha256 differs from {sidecar(source).name}: the pack and "
                        f"its sidecar do not belong together. Pack again with `python3 scripts/pack_data.py pack "
                        f"--force`.")
    with atomic_open(cache) as f:
        f.write(raw)
    print(f"{cache}: {mb(source.stat().st_size)} -> {mb(len(raw))} unpacked in {time.perf_counter() - start:.1f} s")
    return 0


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    p_pack = sub.add_parser("pack", help="the dataset cache -> the pack (and its .json sidecar)")
    p_pack.add_argument("--out", type=Path, default=DEFAULT_PACK, help=f"default: {DEFAULT_PACK}")
    p_pack.add_argument("--force", action="store_true", help="pack again even if the pack is of this cache")
    p_unpack = sub.add_parser("unpack", help="the pack -> the dataset cache, written atomically")
    p_unpack.add_argument("--from", dest="source", type=Path, default=DEFAULT_PACK, help=f"default: {DEFAULT_PACK}")
    p_unpack.add_argument("--force", action="store_true", help="write the cache even if it holds the same bytes")
    args = p.parse_args(argv)
    if args.command == "pack":
        return pack(args.out, args.force)
    return unpack(args.source, args.force)


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
