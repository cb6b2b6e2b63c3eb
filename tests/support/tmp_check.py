"""A test run leaves the temp folder as it found it.

    tmp_check.py snapshot FILE   lists the temp folder's entries into FILE
    tmp_check.py compare FILE    fails, naming them, if entries appeared since

ctest runs the snapshot before every other test and the comparison after all of
them (fixture tmp_clean, tests/CMakeLists.txt). Entries that other processes own are
not the run's leftovers and are ignored: those of other users, and those a running
process still uses (its working folder, an open file or mapping inside). Every test
removes what it makes, also when it fails (tests/support/imap_fixtures.py temp_dir,
tests/support/temp_paths.hpp)."""
import json
import os
import sys
import tempfile
import time

TMP = tempfile.gettempdir()
# The system's socket folders (systemd-tmpfiles makes them at boot; an X server the
# first time): shared by every program, never a test's to remove.
SYSTEM = {".X11-unix", ".ICE-unix", ".XIM-unix", ".font-unix", ".Test-unix"}


def entries():
    return set(os.listdir(TMP))


def in_use():
    """The temp folder's entries that a running process uses."""
    used = set()
    prefix = TMP.rstrip("/") + "/"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        paths = []
        try:
            paths.append(os.readlink(f"/proc/{pid}/cwd"))
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
            with open(f"/proc/{pid}/maps") as f:
                paths += [line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6]
        except OSError:
            continue  # gone, or not ours to read
        for path in paths:
            if path.startswith(prefix):
                used.add(path[len(prefix):].split("/", 1)[0])
    return used


def leftovers(before):
    new = entries() - before - SYSTEM
    mine = set()
    for name in new:
        try:
            if os.lstat(os.path.join(TMP, name)).st_uid == os.getuid():
                mine.add(name)
        except FileNotFoundError:
            pass
    return sorted(mine - in_use())


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("snapshot", "compare"):
        sys.exit(__doc__)
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "snapshot":
        with open(path, "w") as f:
            json.dump(sorted(entries()), f)
        print(f"{len(entries())} entries in {TMP}")
        return
    with open(path) as f:
        before = set(json.load(f))
    # Processes stopped by the last tests may still be removing their folders.
    deadline = time.monotonic() + 10
    left = leftovers(before)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = leftovers(before)
    print(f"{len(before)} entries in {TMP} before the tests, {len(entries())} after; left by the tests: {len(left)}")
    for name in left:
        print(f"  {os.path.join(TMP, name)}")
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
