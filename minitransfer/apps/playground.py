"""The playground: a local web page where you watch the heads work as you type.

One backbone, two heads, side by side: the next-word head's top candidates as
bars (the picture every GPT-2 explanation draws), a sampled continuation
streamed token by token, and, with ``--classifier``, a fine-tuned
classification head's class probabilities for the same text.

The server is Starlette on uvicorn: Starlette is a small, well-kept ASGI
toolkit (routing, JSON and streaming responses, a test client) without
FastAPI's extra layer of validation models, which this handful of endpoints
does not need; uvicorn is the standard server for it. The page is plain
HTML, CSS and one script shipped in ``playground_static/``: no CDN, no web
fonts, no build step, so it works offline.

Endpoints (JSON in, JSON out):

* ``GET  /api/info``: which checkpoint and head each panel uses;
* ``POST /api/candidates`` ``{"text", "top_k"}``: next-token candidates;
* ``POST /api/classify`` ``{"text"}``: class probabilities (with ``--classifier``;
  without one, 409 and a sentence that says so, once the body is found valid);
* ``POST /api/generate`` ``{"text", "max_new_tokens", "temperature", "top_k",
  "top_p", "seed"}``: server-sent events, one ``data:`` line per token, then
  one with ``"done": true`` and the tokens/s;
* ``POST /api/chat`` ``{"messages": [{"role", "content"}, ...], "max_new_tokens", "temperature", "top_k",
  "top_p", "seed"}``: the model's next reply (the last message is the user's), as server-sent events
  like ``/api/generate``; the chat format is ``chat.py``'s, and the oldest messages are dropped (said
  in the first event) when the conversation does not fit the model's context.

Every model call holds one lock: concurrent requests are served one model
call at a time, so answers never mix.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from minitransfer.errors import DataError

STATIC = Path(__file__).resolve().parent / "playground_static"
MAX_TOP_K = 50
MAX_NEW_TOKENS = 200


class BadRequest(ValueError):
    """The request cannot be served as sent; the message says why (HTTP 400,
    or ``status``)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# The most a request body may hold. The models read at most n_positions tokens
# (the end of the text, or a classifier's first max_len), a few kilobytes; a
# megabyte of text is already thousands of times that, and tokenizing 20 MB
# took 15 s and 2 GB of the server's memory for nothing.
MAX_BODY_BYTES = 1 << 20


class Playground:
    """The models behind the page: loaded once, their compiled functions reused."""

    def __init__(self, source: str, classifier: str | None = None):
        from minitransfer.classify import ClassificationHead
        from minitransfer.convert import load_pretrained
        from minitransfer.model import NextWordHead
        from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

        self.source, self.classifier_source = str(source), classifier
        self.model = load_pretrained(source)
        if not isinstance(self.model.head, NextWordHead):
            raise ValueError(
                f"{source} has a fine-tuned {self.model.head.kind} head; --model needs a language model "
                f"(give the classifier with --classifier)"
            )
        self.tokenizer = load_tokenizer(source)
        check_tokenizer_fits(self.tokenizer, self.model.config, str(source))
        self.eos = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.classifier = self.classifier_tokenizer = None
        if classifier is not None:
            self.classifier = load_pretrained(classifier)
            if not isinstance(self.classifier.head, ClassificationHead):
                raise ValueError(
                    f"{classifier} has a {self.classifier.head.kind} head, not a classification head; "
                    f"--classifier needs the OUT/best of `minitransfer finetune --task classify` "
                    f"(the default task)"
                )
            self.classifier_tokenizer = load_tokenizer(classifier)
            check_tokenizer_fits(self.classifier_tokenizer, self.classifier.config, str(classifier))
            meta = Path(classifier) / "config.json"
            extra = json.loads(meta.read_text()).get("minitransfer", {}) if meta.exists() else {}
            self.classifier_max_len = int(extra.get("max_len") or self.classifier.config.n_positions)
            self.classifier_mode = extra.get("mode", "?")
        self.lock = threading.Lock()
        self.warm_thread: threading.Thread | None = None

    # -- what the page shows about itself ------------------------------------

    def info(self) -> dict:
        c = self.model.config
        out = {
            "model": self.source,
            "next_word_head": f"NextWordHead (tied to the {c.vocab_size:,}-token embedding)",
            "n_positions": c.n_positions,
            "shape": f"{c.n_layer} layers x {c.n_embd} wide",
            "classifier": None,
            "chat_model": self.model.head.kind == "chat",
        }
        if self.classifier is not None:
            h = self.classifier.head
            out["classifier"] = {
                "path": self.classifier_source,
                "labels": list(h.labels),
                "pooling": h.pooling,
                "head": f"{type(h).__name__} ({h.pooling} pooling -> {len(h.labels)} classes)",
                "mode": self.classifier_mode,
                "max_len": self.classifier_max_len,
            }
        return out

    def context(self, text: str, room: int) -> tuple[list[int], int, bool]:
        """Token ids of ``text`` that fit in ``room`` positions: (ids, oldest tokens
        dropped, unconditional). Empty text becomes the end-of-text token, GPT-2's
        "start of a document", so the model shows its unconditional guesses."""
        ids = self.tokenizer.encode(text) if text else []
        if not ids:
            return [self.eos], 0, True
        dropped = max(0, len(ids) - room)
        return ids[dropped:], dropped, False

    # -- the two heads ---------------------------------------------------------

    def candidates(self, text: str, top_k: int = 10) -> dict:
        from minitransfer.generate import next_word_probs, top_candidates

        ids, dropped, uncond = self.context(text, self.model.config.n_positions)
        with self.lock:
            probs = next_word_probs(self.model, ids)
        return {
            "candidates": top_candidates(probs, self.tokenizer, top_k),
            "n_tokens": len(ids),
            "dropped": dropped,
            "unconditional": uncond,
        }

    def classify(self, text: str) -> dict:
        from flax import nnx

        from minitransfer.generate import bucket_length
        from minitransfer.steps import forward_tokens, make_eval_step

        if self.classifier is None:  # 409: the request is fine, the server is not in a state to answer it
            raise BadRequest(
                "no classifier is loaded in this playground, so there are no class probabilities to "
                "give; start it with --classifier DIR (a model from minitransfer finetune)",
                409,
            )
        ids = self.classifier_tokenizer.encode(text) if text else []
        unconditional = not ids  # the classifier's answer before any text: its prior, from the end-of-text token
        if unconditional:
            ids = [self.classifier_tokenizer.eos_token_id or 0]
        suffix = list(self.classifier.head.text_suffix(self.classifier_tokenizer))  # a prompt head's prompt
        L = self.classifier_max_len - len(suffix)
        ignored = max(0, len(ids) - L)
        ids = ids[:L] + suffix  # as in training: the first max_len tokens (a prompt's room left at the end)
        T = bucket_length(len(ids), L)
        batch = {"input_ids": np.zeros((1, T), np.int32), "attention_mask": np.zeros((1, T), np.int32)}
        batch["input_ids"][0, : len(ids)] = ids
        batch["attention_mask"][0, : len(ids)] = 1
        graphdef, params = nnx.split(self.classifier)
        with self.lock:
            logits = np.asarray(make_eval_step(graphdef, forward_tokens)(params, batch))[0]  # (K,)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {
            "labels": list(self.classifier.head.labels),
            "probs": [float(x) for x in p],
            "n_tokens": len(ids),
            "ignored": ignored,
            "unconditional": unconditional,
        }

    def generate_events(
        self, text: str, max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None, seed: int
    ):
        """Yield one dict per new token, then a final one with ``done`` and the speed."""
        from minitransfer.generate import stream

        room = self.model.config.n_positions - max_new_tokens
        ids, dropped, _ = self.context(text, room)
        yield {"start": True, "dropped": dropped, "n_tokens": len(ids)}
        gen = stream(
            self.model,
            ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            eos_id=self.eos,
        )
        n, t0, prev = 0, time.perf_counter(), ""
        new_ids: list[int] = []
        while True:
            with self.lock:
                t = next(gen, None)
            if t is None:
                break
            n += 1
            if t == self.eos:
                break
            new_ids.append(t)
            # decode the whole continuation each time: a token can end in the
            # middle of a UTF-8 character that the next token completes
            full = self.tokenizer.decode(new_ids)
            piece, prev = full[len(prev) :], full
            yield {"token": piece, "id": t}
        secs = time.perf_counter() - t0
        # the speed counts every token the model produced (an end-of-text too: it took a step); "tokens", the
        # ones the page shows
        yield {
            "done": True,
            "tokens": len(new_ids),
            "seconds": secs,
            "tokens_per_second": n / secs if secs > 0 else None,
            "ended": "end-of-text" if n > len(new_ids) else "max_new_tokens",
        }

    def chat_events(
        self,
        messages: list[dict],
        max_new_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int,
    ):
        """Yield the start (messages dropped to fit), one dict per piece of the reply, then ``done``
        with the whole reply and why it ended (``chat.reply_stream``: end-of-text, role marker, or
        max_new_tokens)."""
        from minitransfer.chat import fit_history, prompt_ids, reply_stream

        room = self.model.config.n_positions - max_new_tokens
        kept, dropped = fit_history(messages, self.tokenizer, room)
        ids = prompt_ids(kept, self.tokenizer)
        if len(ids) > room:
            raise BadRequest(
                f"the last message is {len(ids)} tokens with its markers; this model reads "
                f"{self.model.config.n_positions} positions, {max_new_tokens} of them kept for the reply "
                f"(max_new_tokens): say it shorter"
            )
        yield {"start": True, "dropped": dropped, "n_tokens": len(ids)}
        gen = reply_stream(
            self.model,
            self.tokenizer,
            ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        while True:
            with self.lock:  # one model call (a decode step) at a time, as generate_events
                piece = next(gen, None)
            if piece is None:
                return
            if isinstance(piece, tuple):
                yield {"done": True, "reply": piece[0], "ended": piece[1]}
                return
            yield {"token": piece}

    def warm_up(self) -> None:
        """Compile what the page asks for first (candidates, classes) before the
        first visitor arrives; generation compiles in the background meanwhile."""
        self.candidates("Hello")
        if self.classifier is not None:
            self.classify("Hello")

        def generation():
            from minitransfer.generate import stream

            for _ in stream(self.model, [self.eos], 2, temperature=0.8, top_p=0.95, eos_id=None):
                pass

        # not a daemon: exiting while XLA compiles in a daemon thread aborts the
        # process; serve() waits for it (a second or two) before returning
        self.warm_thread = threading.Thread(target=generation)
        self.warm_thread.start()


# ----------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------


async def _json_body(request, fields: tuple[str, ...], needs_text: bool = True) -> dict:
    """The request's JSON object, whose keys must be among ``fields``: a
    misspelt setting (``temprature``) is an error, not silently the default.
    ``needs_text``: the body must hold a string field "text" (every endpoint but /api/chat)."""
    too_big = BadRequest(
        f"the request body is over the playground's limit of {MAX_BODY_BYTES:,} bytes (the model "
        f"reads at most a few thousand characters of it)",
        413,
    )
    try:
        declared = int(request.headers.get("content-length", 0))
    except ValueError:
        raise BadRequest("the Content-Length header is not a number") from None
    if declared > MAX_BODY_BYTES:  # said before any of it is read
        raise too_big
    raw = b""
    async for chunk in request.stream():  # (a body without Content-Length: counted as it comes)
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise too_big
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the request body is not valid UTF-8 (byte {e.start})") from None
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(body, dict):
        raise BadRequest('the request body must be a JSON object, such as {"text": "..."}')
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; this endpoint reads {', '.join(map(repr, fields))}"
        )
    if not needs_text:
        return body
    if "text" not in body:
        raise BadRequest('field \'text\' is missing: the request body is {"text": "..."} and any settings')
    if not isinstance(body["text"], str):
        raise BadRequest("field 'text' must be a string")
    try:  # JSON's \ud800 escapes decode to lone surrogates: not text the tokenizer can take
        body["text"].encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(
            f"field 'text' holds a lone UTF-16 surrogate (\\u{ord(body['text'][e.start]):04x} at "
            f"character {e.start}), which is not a character"
        ) from None
    return body


def _number(body: dict, name: str, kind, default, lo, hi):
    v = body.get(name, default)
    if v is None and default is None:
        return None
    # JSON numbers only: "3" or true are not quietly read as 3 or 1, nor 2.5 as 2 where a count is asked
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"field {name!r} must be a number, got {json.dumps(body.get(name))}")
    if kind is int and not float(v).is_integer():  # (NaN and infinities are not whole either)
        raise BadRequest(f"field {name!r} must be a whole number, got {v!r}")
    try:
        v = kind(v)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"field {name!r} must be a number, got {body.get(name)!r}") from None
    if not lo <= v <= hi:
        raise BadRequest(f"field {name!r} must be between {lo} and {hi}, got {v}")
    return v


def sampling(pg: Playground, body: dict) -> dict:
    """The sampling settings of a request, each in its range (the model's positions bound the tokens)."""
    n_pos = pg.model.config.n_positions
    return dict(
        max_new_tokens=_number(body, "max_new_tokens", int, min(40, n_pos - 1), 1, min(MAX_NEW_TOKENS, n_pos - 1)),
        temperature=_number(body, "temperature", float, 0.8, 0.05, 5.0),
        top_k=_number(body, "top_k", int, None, 1, pg.model.config.vocab_size),
        top_p=_number(body, "top_p", float, 0.95, 0.01, 1.0),
        seed=_number(body, "seed", int, 0, 0, 2**31 - 1),
    )


def chat_messages(body: dict) -> list[dict]:
    """A chat request's conversation, checked: the last message is the user's."""
    from minitransfer.chat import check_messages

    if "messages" not in body:
        raise BadRequest(
            'field \'messages\' is missing: the request body is {"messages": [{"role": '
            '"user", "content": "..."}, ...]} and any settings'
        )
    try:
        messages = check_messages(body["messages"], "the request")
    except DataError as e:
        raise BadRequest(str(e)) from None
    if messages[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's: the model writes the reply to it")
    return messages


def event_stream(run_in_threadpool, request, events):
    """Server-sent events, one per item of ``events`` (a blocking iterator, read in a worker
    thread), until it ends or the page disconnects (its Stop button)."""
    from starlette.responses import StreamingResponse

    async def sse():
        while True:
            if await request.is_disconnected():
                return
            ev = await run_in_threadpool(next, events, None)
            if ev is None:
                return
            yield f"data: {json.dumps(ev)}\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def create_app(pg: Playground):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    def error(e: Exception, status: int = 400):
        return JSONResponse({"error": str(e)}, status_code=status)

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def static(request):
        name = request.path_params["name"]
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            return error(ValueError(f"no such file: {name}"), 404)
        return FileResponse(path)

    async def info(request):
        return JSONResponse(pg.info())

    async def candidates(request):
        try:
            body = await _json_body(request, ("text", "top_k"))
            k = _number(body, "top_k", int, 10, 1, MAX_TOP_K)
            return JSONResponse(await run_in_threadpool(pg.candidates, body.get("text", ""), k))
        except BadRequest as e:
            return error(e, e.status)

    async def classify(request):
        try:  # the body first: a bad request is said as such (400, 413), with or without a classifier
            body = await _json_body(request, ("text",))
            return JSONResponse(await run_in_threadpool(pg.classify, body.get("text", "")))
        except BadRequest as e:
            return error(e, e.status)

    async def generate(request):
        try:
            body = await _json_body(request, ("text", "max_new_tokens", "temperature", "top_k", "top_p", "seed"))
            settings = sampling(pg, body)
        except BadRequest as e:
            return error(e, e.status)
        return event_stream(run_in_threadpool, request, pg.generate_events(body.get("text", ""), **settings))

    async def chat(request):
        try:
            body = await _json_body(
                request, ("messages", "max_new_tokens", "temperature", "top_k", "top_p", "seed"), needs_text=False
            )
            messages = chat_messages(body)
            settings = sampling(pg, body)
            events = pg.chat_events(messages, **settings)
            first = await run_in_threadpool(next, events)  # a message too long to fit is said as a 400, not a stream
        except BadRequest as e:
            return error(e, e.status)

        def replay():
            yield first
            yield from events

        return event_stream(run_in_threadpool, request, replay())

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/candidates", candidates, methods=["POST"]),
        Route("/api/classify", classify, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(source: str, classifier: str | None = None, host: str = "127.0.0.1", port: int = 8000, log=print) -> int:
    """Load, warm up, and serve until Ctrl-C."""
    import uvicorn

    if not port_free(host, port):
        raise ValueError(f"port {port} on {host} is already in use; choose another with --port")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(
            f"warning: listening on {host}: anyone who can reach this machine on port {port} can use the "
            f"playground (and your CPU); the default --host 127.0.0.1 keeps it to this machine"
        )
    pg = None
    try:  # Ctrl-C at any point (loading, compiling, serving) ends cleanly
        t0 = time.perf_counter()
        pg = Playground(source, classifier)
        pg.warm_up()
        log(
            f"playground: {source}"
            + (f" + classifier {classifier}" if classifier else "")
            + f" loaded and compiled in {time.perf_counter() - t0:.1f} s"
        )
        config = uvicorn.Config(create_app(pg), host=host, port=port, log_level="warning")
        log(f"open http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/  (Ctrl-C stops)")
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if pg is not None and pg.warm_thread is not None:
            pg.warm_thread.join()
    log("playground: stopped")
    sys.stdout.flush()
    return 0
