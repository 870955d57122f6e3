"""Rewrite one marked block of a markdown file, keeping everything else intact."""

import os
import tempfile


def replace_block(path: str, begin: str, end: str, body: str, header: str,
                  section: str = "") -> None:
    """Put `body` between the lines `begin` and `end` in the file at `path`.

    A missing file is created with `header`, then `section` (a heading for the
    block), then the block. A file without the markers gets `section` and the
    block appended. A file with only one marker, or with them
    out of order, is left alone and ValueError is raised.
    """
    block = f"{begin}\n{body.rstrip()}\n{end}"
    lead = f"{section.strip()}\n\n" if section.strip() else ""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = None

    if text is None:
        new = f"{header.rstrip()}\n\n{lead}{block}\n"
    else:
        b, e = text.find(begin), text.find(end)
        if b < 0 and e < 0:
            new = text.rstrip("\n") + ("\n\n" if text.strip() else "") + lead + block + "\n"
        elif b < 0 or e < 0 or e < b:
            raise ValueError(f"{path}: markers {begin!r} / {end!r} missing or out of order")
        else:
            new = text[:b] + block + text[e + len(end):]

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bench-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        if text is not None:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
