"""Helpers of the hostile tests: a sacrificial folder beside IN and OUT, and fingerprints of
everything outside IN and OUT (sha1 of each file, target of each link, each folder)."""
import hashlib
import os
from pathlib import Path


def fingerprint(base: Path, skip=()) -> dict[str, str]:
    """Every path below `base` except those below a name in `skip` (IN, OUT): sha1 of a file,
    'link:TARGET' of a link, 'dir' of a folder. Links are not followed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base)
        if rel_dir.parts and rel_dir.parts[0] in skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = (rel_dir / name).as_posix()
            if not rel_dir.parts and name in skip:
                continue
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def changed(before: dict, after: dict) -> list[str]:
    """Paths added, removed or changed between two fingerprints."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def make_victim(base: Path) -> Path:
    """The sacrificial folder: files that must never change, and a sub-folder."""
    victim = base / "victim"
    (victim / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png", "notes.txt"):
        (victim / name).write_bytes(f"precious {name}".encode() * 10)
    return victim


def contents(*folders: Path) -> list[str]:
    """sha1 of every regular file (not a link) below the folders, illusort's own files left out."""
    found = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".illusort")]
            for name in filenames:
                path = Path(dirpath, name)
                if not name.startswith(".illusort") and not path.is_symlink() and path.is_file():
                    found.append(hashlib.sha1(path.read_bytes()).hexdigest())
    return sorted(found)


def one_line_error(result) -> str:
    """The CLI refused with exit code 1 and exactly one 'Error:' line, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]
