"""Reading the end of a worker's log safely (standard library only: the container's
server uses it as well as the host).

The candidate can replace its log (a FIFO, a link to /dev/zero), so: no links followed,
regular files only, and a bounded read.
"""
import os
import stat


def log_tail(path: str | os.PathLike, chars: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "(the candidate replaced its log with something that is not a file)"
        os.lseek(fd, max(info.st_size - chars, 0), os.SEEK_SET)
        return os.read(fd, chars).decode(errors="replace")
    finally:
        os.close(fd)
