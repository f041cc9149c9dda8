"""`illusort review OUT`: the sort as a local web app where every fix is one click or key.

One path for every change: each action calls the library functions the command line calls
(`corrections.name_character`, `merge_characters`, `move_images`, ...): journaled in the
index, applied to OUT at once, kept by later sorts. The app never writes a file itself (the
thumbnail cache is `report.View`'s). An action holds OUT's lock from its first write to its
last, so while a sort runs in another terminal it answers "busy" and changes nothing.

Safety (SECURITY.md): served on 127.0.0.1 only. Every request must carry the random token of
the printed URL (kept in a SameSite=Strict cookie after the first visit) and name this server
in its Host header (a DNS-rebinding page cannot); a change (POST) must come from this page
itself: same Origin, Sec-Fetch-Site same-origin, the token in a header, a JSON body. Only the
pictures of OUT's manifest and their thumbnails are served, read through `report.View`, whose
`safepath` checks keep every read inside IN and OUT whatever a manifest or link says.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import mimetypes
import os
import secrets
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from . import corrections, report, safepath, suggest
from .errors import IllusortError, InputError
from .index import default_index_path
from .layout import MANIFEST, NOT_A_CHARACTER, UNSORTED
from .manifest import OutputBusy, output_folder, output_lock

STATIC = Path(__file__).parent / "static"
HEADERS = {  # every answer: no framing, no sniffing, scripts and pictures only from here
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
}
KEYS = [("j / k, → / ←", "next / previous picture"), ("x or space", "select the picture"),
        ("a", "accept the suggestion"), ("r", "reject it: not this character"),
        ("t", "send the selected pictures to a character (or a new one)"), ("d", "not a character"),
        ("e", "rename this character"), ("m", "merge this character into another"),
        ("y / n", "same character? merge / keep apart"), ("u", "undo the last action"), ("o", "open the whole picture")]


class Review:
    """One sort under review: its view (read again when OUT's manifest changes), the token,
    and the actions. Actions run one at a time."""

    def __init__(self, out: Path, source: Path | None = None, index_path: Path | None = None,
                 token: str | None = None, port: int = 0):
        self.out, self.source, self.index_path = output_folder(out), source, index_path
        self.token = token or secrets.token_urlsafe(24)
        self.port = port
        self._acting, self._viewing = threading.Lock(), threading.Lock()
        self._view, self._stamp, self._state, self._queue = None, None, None, []

    # ---- what the pages show -------------------------------------------------------------
    def view(self) -> report.View:
        """The sort as it is now, each picture's hint the suggestion about it (the queue of
        `suggest`, else its nearest character when unsorted): read again when OUT's manifest or
        the index changed (an action here, or a sort or correction in another terminal)."""
        with self._viewing:
            stamp = self.stamp()
            if self._view is None or stamp != self._stamp:
                view = report.collect(self.out, self.source, self.index_path)
                self._state = suggest.load_state(self.out, self.index_path)
                self._queue = suggest.rank(self._state)
                for p in view.folders.get(UNSORTED, []):  # the nearest character, as one more "place"
                    if p.hint:
                        p.hint = {**p.hint, "suggestion": suggest.Suggestion(
                            0, "place", p.hint["similarity"] - self._state.threshold, p.hint["similarity"],
                            p.hint["folder"], None, [p.dest])}
                for s in self._queue:
                    if s.kind in ("place", "move") and s.files[0] in view.pictures:
                        view.pictures[s.files[0]].hint = {"folder": s.folder, "similarity": s.similarity,
                                                          "kind": s.kind, "suggestion": s}
                self._view = view
                self._stamp = self.stamp()
            return self._view

    def stamp(self) -> tuple:
        """What changes when the sort does: OUT's manifest and the index files (size, time)."""
        index = self.index_path or (default_index_path(Path(self._view.root)) if self._view else None)
        files = [self.out / MANIFEST] + ([Path(f"{index}{suffix}") for suffix in ("", "-wal")] if index else [])
        found = []
        for path in files:
            try:
                st = os.lstat(path)
                found.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                found.append(None)
        return tuple(found)

    def picture(self, dest: str) -> report.Picture:
        found = self.view().pictures.get(dest)
        if found is None:
            raise InputError(f"{dest} is no longer in {self.out}; reload the page")
        return found

    def pairs(self) -> list:
        """The suggestions about whole folders: 'same character?' (merge), a folder that looks
        like two (split), unsorted pictures that look like a new character (new)."""
        self.view()
        return [s for s in self._queue if s.kind in ("merge", "split", "new")]

    def pair(self, key: str):
        """The folder suggestion the page showed (by `pair_key`), as the queue has it now."""
        found = [s for s in self.pairs() if pair_key(s) == key]
        if not found:
            raise InputError("that suggestion is no longer offered (the sort changed); reload the page")
        return found[0]

    def answer(self, yes=(), no=()) -> None:
        """Answers to suggestions, as one correction (`suggest.answer`: one step of undo)."""
        suggest.answer(self._state, yes=yes, no=no, index_path=self.index_path, source=self.source)

    # ---- actions: each one library call, under OUT's lock ----------------------------------
    def act(self, name: str, body: dict) -> dict:
        """Run action `name`; returns {'message': what it did, in words, 'go': the page to show
        next when the current one is gone (a renamed or merged character)}. Busy (`OutputBusy`)
        when another run holds OUT: nothing is changed then."""
        action = ACTIONS.get(name)
        if action is None:
            raise InputError(f"no action {name!r}")
        with self._acting, output_lock(self.out, hold=True):
            done = action(self, body)
        return done if isinstance(done, dict) else {"message": done}


def pair_key(s) -> str:
    """A suggestion about folders, named the same way while the sort stays as it is."""
    text = "\0".join([s.kind, s.folder, s.other or "", *s.files])
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def groups(view: report.View, s) -> list[list]:
    """The pictures a folder suggestion is about, as the page shows them side by side."""
    if s.kind == "merge":
        return [view.folders.get(s.folder, []), view.folders.get(s.other, [])]
    part = [view.pictures[d] for d in s.files if d in view.pictures]
    if s.kind == "split":
        return [[p for p in view.folders.get(s.folder, []) if p.dest not in s.files], part]
    return [part]


def said(s) -> str:
    """What taking a folder suggestion did, in words."""
    if s.kind == "merge":
        return f"{s.other} merged into {s.folder}"
    if s.kind == "split":
        return f"{pictures(len(s.files))} of {s.folder} split off into {s.other}"
    return f"{pictures(len(s.files))} from unsorted make a new character, {s.folder}"


def pictures(n: int) -> str:
    return f"{n} picture{'s' * (n != 1)}"


def files_of(body: dict) -> list[str]:
    files = body.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise InputError("select one picture or more first")
    return files


def text_of(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"give a {key}")
    return value.strip()


def accept(review: Review, body: dict) -> str | dict:
    """Yes to the suggestion about each picture given (its place or move), or to a folder
    suggestion (merge, split, new character): one `suggest.answer`."""
    if "pair" in body:
        s = review.pair(text_of(body, "pair"))
        review.answer(yes=[s])
        return {"message": said(s), "go": "/folder/same"}
    yes = [review.picture(dest).hint["suggestion"] for dest in files_of(body) if review.picture(dest).hint]
    if not yes:
        raise InputError("none of these pictures has a suggestion")
    review.answer(yes=yes)
    return f"{pictures(len(yes))} moved to {', '.join(sorted({s.folder for s in yes}))}"


def reject(review: Review, body: dict) -> str | dict:
    """No to the suggestion about each picture given ("not that character", remembered), or
    to a folder suggestion (never proposed again). A picture with no suggestion is "not this
    character" of its own folder: it goes to unsorted/ (`corrections.reject_images`)."""
    if "pair" in body:
        s = review.pair(text_of(body, "pair"))
        review.answer(no=[s])
        return {"message": f"dismissed: {s.kind} {s.folder}" + (f" and {s.other}" if s.other else ""),
                "go": "/folder/same"}
    chosen = [review.picture(dest) for dest in files_of(body)]
    no = [p.hint["suggestion"] for p in chosen if p.hint]
    own = [p for p in chosen if not p.hint]
    if any(p.folder in (UNSORTED, NOT_A_CHARACTER) for p in own):
        raise InputError("an unsorted picture with no suggestion has nothing to reject")
    if no:
        review.answer(no=no)
    for folder in dict.fromkeys(p.folder for p in own):
        corrections.reject_images(review.out, [Path(p.dest) for p in own if p.folder == folder], folder,
                                  review.index_path, review.source)
    said_no = sorted({s.folder for s in no} | {p.folder for p in own})
    return f"{pictures(len(chosen))} marked not {', '.join(said_no)}"


def move(review: Review, body: dict) -> str:
    """Send pictures to a character, new or not; 'not-a-character' sets them aside."""
    to = text_of(body, "to")
    if to != NOT_A_CHARACTER:
        corrections.check_character_name(to, "character")
    files = [Path(review.picture(dest).dest) for dest in files_of(body)]
    moved = corrections.move_images(review.out, files, to, review.index_path, review.source)
    return f"{pictures(len(moved))} moved to {to}"


def name(review: Review, body: dict) -> dict:
    """Rename a character folder (merged into NAME if that one exists)."""
    folder = corrections.check_character_folder(text_of(body, "folder"))
    new = corrections.check_character_name(text_of(body, "name"))
    corrections.name_character(review.out, folder, new, review.index_path, review.source)
    return {"message": f"{folder} is now {new}", "go": f"/folder/{quote(new)}"}


def merge(review: Review, body: dict) -> dict:
    """Merge character folders `others` into `into`."""
    into = corrections.check_character_folder(text_of(body, "into"))
    others = [corrections.check_character_folder(o) for o in body.get("others") or [] if isinstance(o, str)]
    if not others or into in others:
        raise InputError("merge two different characters")
    corrections.merge_characters(review.out, into, others, review.index_path, review.source)
    return {"message": f"{', '.join(others)} merged into {into}", "go": f"/folder/{quote(into)}"}


def undo(review: Review, body: dict) -> str:
    """Take back the last correction of OUT, made here or by a command (`corrections.undo_last`);
    again for the one before it."""
    return f"undone: {corrections.undo_last(review.out, review.index_path, review.source)}"


ACTIONS = {"accept": accept, "reject": reject, "move": move, "name": name, "merge": merge, "undo": undo}


# ---- the web app ---------------------------------------------------------------------------

def refusal(review: Review, request: Request) -> str | None:
    """Why a request is refused (None: it is this page's own)."""
    hosts = {f"127.0.0.1:{review.port}", f"localhost:{review.port}"}
    if request.headers.get("host") not in hosts:
        return "wrong Host header: open the address illusort review printed"
    given = request.cookies.get(cookie_name(review)) or request.query_params.get("token") or ""
    if not hmac.compare_digest(given.encode(), review.token.encode()):
        return "no valid token: open the address illusort review printed (it carries the token)"
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("origin")
        if origin is not None and origin not in {f"http://{h}" for h in hosts}:
            return "cross-origin request refused"
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return "cross-site request refused"
        if not hmac.compare_digest(request.headers.get("x-illusort-token", "").encode(), review.token.encode()):
            return "a change needs the page's token header"
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return "a change is a JSON request"
    return None


def cookie_name(review: Review) -> str:
    return f"illusort-{review.port}"


def create_app(review: Review) -> Starlette:
    """The app: pages, pictures, thumbnails and actions, behind `refusal`."""

    def page(request: Request) -> Response:
        view = review.view()
        folder = request.path_params.get("folder")
        if folder is None:  # the queue first: unsorted pictures and their suggestions
            first = UNSORTED if view.folders.get(UNSORTED) else (view.order or [UNSORTED])[0]
            return RedirectResponse(f"/folder/{quote(first)}", status_code=303)
        if folder not in view.folders and folder != "same":
            return PlainTextResponse(f"{folder} is not a folder of this sort", status_code=404)
        return render_page(review, view, folder)

    def picture(request: Request) -> Response:
        p = review.view().pictures.get(request.path_params["dest"])
        readable = review.view().readable(p) if p else None
        if readable is None:
            return PlainTextResponse("not a picture of this sort", status_code=404)
        kind = mimetypes.guess_type(readable)[0] or ""
        return FileResponse(readable, media_type=kind if kind.startswith("image/") else "application/octet-stream")

    def thumb(request: Request) -> Response:
        p = review.view().pictures.get(request.path_params["dest"])
        try:
            name = review.view().thumbnail(p) if p else None
            data = safepath.read_own(review.out / report.THUMBS / name) if name else None
        except (OSError, IllusortError):
            data = None
        if data is None:
            return PlainTextResponse("no thumbnail", status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    def script(request: Request) -> Response:
        return FileResponse(STATIC / "review.js", media_type="text/javascript")

    async def action(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "a change is a JSON object"}, status_code=400)
        try:
            done = await run_in_threadpool(review.act, request.path_params["name"], body)
        except OutputBusy:
            return JSONResponse({"error": "busy: another illusort run (a sort?) is writing this folder; "
                                          "nothing was changed, try again when it ends"}, status_code=409)
        except IllusortError as error:
            return JSONResponse({"error": " ".join(str(error).split())}, status_code=400)
        return JSONResponse(done)

    async def guard(request: Request, call_next) -> Response:
        problem = refusal(review, request)
        if problem:
            response = PlainTextResponse(problem, status_code=403)
        elif "token" in request.query_params and request.method == "GET":  # first visit: token to a cookie
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(cookie_name(review), review.token, httponly=True, samesite="strict")
        else:
            response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def failed(request: Request, error: Exception) -> Response:  # e.g. the sort was undone meanwhile
        return PlainTextResponse(" ".join(str(error).split()), status_code=409, headers=HEADERS)

    return Starlette(routes=[Route("/", page), Route("/folder/{folder}", page),
                             Route("/picture/{dest:path}", picture), Route("/thumb/{dest:path}", thumb),
                             Route("/static/review.js", script), Route("/action/{name}", action, methods=["POST"])],
                     middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)],
                     exception_handlers={IllusortError: failed})


def render_page(review: Review, view: report.View, folder: str) -> Response:
    """One folder's contact sheet (characters least confident first, unsorted best suggestion
    first), or the 'same character?' pairs."""
    pictures = view.folders.get(folder, [])
    ordered = (sorted(pictures, key=lambda p: (-(p.hint or {}).get("similarity", -2), p.dest)) if folder == UNSORTED
               else report.by_confidence(pictures))
    html = report.render("review.html", view=view, folder=folder, pictures=ordered, token=review.token,
                         pairs=review.pairs(), pair_key=pair_key, groups=functools.partial(groups, view), keys=KEYS,
                         out=review.out,
                         characters=view.characters, special=report.SPECIAL_FOLDERS,
                         thumb=lambda p: f"/thumb/{quote(p.dest)}", href=lambda p: f"/picture/{quote(p.dest)}",
                         folder_url=lambda f: f"/folder/{quote(f)}")
    return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


# ---- serving -------------------------------------------------------------------------------

def listen(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (a free port when none is given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as error:
        sock.close()
        raise InputError(f"cannot serve on 127.0.0.1:{port}: {error.strerror or error}; "
                         "give another --port, or none for a free one") from None
    sock.listen(128)
    return sock


def serve(review: Review, port: int | None = None, browser: bool = True, echo=print) -> None:
    """Serve the review until Ctrl-C: print the address (with its token), open the browser."""
    import uvicorn

    sock = listen(port)
    review.port = sock.getsockname()[1]
    review.view()  # a broken sort fails here, in one line, before the address is printed
    url = f"http://127.0.0.1:{review.port}/?token={review.token}"
    echo(f"reviewing {review.out} at {url}\n(Ctrl-C stops it)")
    if browser and has_browser():
        import webbrowser

        threading.Timer(0.2, webbrowser.open, (url,)).start()
    server = uvicorn.Server(uvicorn.Config(create_app(review), log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then passes Ctrl-C on: the way to stop
        pass
    finally:
        sock.close()
    echo("review stopped")


def has_browser() -> bool:
    """A graphical browser can open: on Linux and BSD only in a desktop session (else Python
    would start a text browser inside this terminal)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
