"""The `illusort` group: one handler turns every failure the user can act on into one line
and an exit code (`ExitStatus`); anything else is a bug and keeps its traceback."""
from __future__ import annotations

import errno
import sqlite3
import warnings

import click

from .. import __version__
from ..errors import IllusortError
from .exit_status import ExitStatus, epilog, leave
from .rendering import one_line

# OS errors that describe the machine, not a bug: permissions, read-only or full disks, I/O.
ENVIRONMENT_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO,
                      errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE, errno.ENFILE, errno.EXDEV, errno.ETXTBSY,
                      errno.EBUSY}


class IllusortGroup(click.Group):
    """The one error handler of every command. A user's mistake (`IllusortError`) becomes a
    one-line error and exit 1, and so does what the machine refuses (a read-only folder, a full
    disk, a damaged index); Ctrl-C says how to resume (exit 130). Anything else, a missing file
    included, is a bug and keeps its traceback. Every message is one printable line
    (`terminal.shown`): names in it may hold escapes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IllusortError as error:
            raise click.ClickException(one_line(error)) from None
        except sqlite3.Error as error:
            raise click.ClickException(f"index error: {one_line(error)}; if the disk is not full, move the index "
                                       "(DIR/.illusort/index.db) aside and run again to rebuild it") from None
        except OSError as error:
            if error.errno not in ENVIRONMENT_ERRORS:
                raise
            where = f" {error.filename}" if error.filename else ""
            raise click.ClickException(one_line(f"cannot use{where}: {error.strerror or error}")) from None
        except click.ClickException as error:  # the command's own, and click's: names shown escaped too
            error.message = one_line(error.message)
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished batches are saved; run the same command again to resume.", err=True)
            leave(ExitStatus.INTERRUPTED)


@click.group(cls=IllusortGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    f"{epilog()} Shell completion: "
    'eval "$(_ILLUSORT_COMPLETE=bash_source illusort)" (zsh_source, fish_source for other shells).'))
@click.version_option(__version__, prog_name="illusort")
def main():
    """Sort anime/manga illustrations by the character drawn in them.

    Start with `illusort sort DIR`; `illusort status OUT` tells where a sort stands."""
    warnings.filterwarnings("default", module="illusort")
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {one_line(message)}\n"
