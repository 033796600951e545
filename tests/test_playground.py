"""The playground: its JSON API (every bad input), the command's edges (port
in use, Ctrl-C), and the page itself in headless Chromium where installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.classify import ClassificationHead
from tests.conftest import REPO

TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, n_positions=32)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, gpt2_tokenizer):
    d = tmp_path_factory.mktemp("pg")
    lm = mt.GPT2.language_model(mt.GPT2Config(**TINY), seed=7)
    mt.save_pretrained(lm, d / "lm", tokenizer=gpt2_tokenizer)
    clf = mt.GPT2(lm.backbone, ClassificationHead(32, ["negative", "neutral", "positive"], pooling="mean"))
    mt.save_pretrained(clf, d / "clf", tokenizer=gpt2_tokenizer, extra={"max_len": 16, "mode": "full"})
    return d


@pytest.fixture(scope="module")
def client(dirs):
    from starlette.testclient import TestClient

    from minitransfer.apps.playground import Playground, create_app

    pg = Playground(str(dirs / "lm"), str(dirs / "clf"))
    with TestClient(create_app(pg)) as c:
        c.pg = pg
        yield c


def test_page_and_static_files_are_served_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "minitransfer playground" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "http" not in client.get("/static/style.css").text  # no CDN, no web fonts
    assert client.get("/static/../cli.py").status_code == 404


def test_candidates_are_sorted_probabilities(client):
    r = client.post("/api/candidates", json={"text": "The movie was", "top_k": 10}).json()
    p = [c["prob"] for c in r["candidates"]]
    assert len(p) == 10 and p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    assert r["n_tokens"] == 3 and r["dropped"] == 0 and not r["unconditional"]
    # the same as the library's next-word distribution
    probs = mt.generate.next_word_probs(client.pg.model, client.pg.tokenizer.encode("The movie was"))
    assert r["candidates"][0]["id"] == int(np.argmax(probs))


def test_empty_and_too_long_text(client):
    r = client.post("/api/candidates", json={"text": ""}).json()
    assert r["unconditional"] and r["n_tokens"] == 1 and len(r["candidates"]) == 10
    long = "word" + " word" * 49  # 50 tokens > n_positions 32
    r = client.post("/api/candidates", json={"text": long}).json()
    assert r["dropped"] == 50 - 32 and r["n_tokens"] == 32
    c = client.post("/api/classify", json={"text": long}).json()
    assert c["ignored"] == 50 - 16 and c["n_tokens"] == 16 and not c["unconditional"]
    c = client.post("/api/classify", json={"text": ""}).json()  # said, as the candidates say it
    assert c["unconditional"] and c["n_tokens"] == 1 and abs(sum(c["probs"]) - 1) < 1e-5


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"text": "\xff\xfe"}', "not valid UTF-8"),
        (b'{"text": "unclosed', "not valid JSON"),
        (b'["a list"]', "must be a JSON object"),
        (b'{"text": 5}', "'text' must be a string"),
        (b'{"text": "a", "top_k": "many"}', "'top_k' must be a number"),
        (b'{"text": "a", "top_k": 0}', "'top_k' must be between 1 and 50"),
        (b'{"text": "a", "topk": 3}', "unknown field(s) 'topk'; this endpoint reads 'text', 'top_k'"),
        (b'{"txt": "a"}', "unknown field(s) 'txt'"),
        (b"{}", "field 'text' is missing"),
        (b'{"text": "a", "top_k": "3"}', "'top_k' must be a number, got \"3\""),
        (b'{"text": "a", "top_k": true}', "'top_k' must be a number, got true"),  # as JSON writes it
        (b'{"text": "a\\ud800b"}', "field 'text' holds a lone UTF-16 surrogate (\\ud800 at character 1)"),
        (b'{"text": "a", "top_k": 2.5}', "'top_k' must be a whole number, got 2.5"),
        (b'{"text": "a", "top_k": NaN}', "'top_k' must be a whole number, got nan"),
    ],
)
def test_bad_requests_are_400_with_a_message(client, body, message):
    r = client.post("/api/candidates", content=body)
    assert r.status_code == 400 and message in r.json()["error"]
    if b"ud800" in body:  # (was a 500 here and an empty 200 stream from generate)
        r = client.post("/api/generate", content=body)
        assert r.status_code == 400 and message in r.json()["error"]


def test_generate_bad_settings(client):
    r = client.post("/api/generate", json={"text": "a", "temperature": 0})
    assert r.status_code == 400 and "'temperature' must be between" in r.json()["error"]
    r = client.post("/api/generate", json={"text": "a", "temprature": 0.5})
    assert r.status_code == 400 and "unknown field(s) 'temprature'" in r.json()["error"]


def test_classification_panel(client, dirs):
    r = client.post("/api/classify", json={"text": "I love this"}).json()
    assert r["labels"] == ["negative", "neutral", "positive"] and abs(sum(r["probs"]) - 1) < 1e-5
    info = client.get("/api/info").json()
    assert info["classifier"]["labels"] == r["labels"] and info["classifier"]["mode"] == "full"
    assert info["model"] == str(dirs / "lm")


def test_classify_without_classifier_checks_the_body_then_is_409(dirs):
    from starlette.testclient import TestClient

    from minitransfer.apps.playground import Playground, create_app

    with TestClient(create_app(Playground(str(dirs / "lm")))) as c:
        r = c.post("/api/classify", json={"text": "x"})
        assert r.status_code == 409 and "no classifier is loaded" in r.json()["error"]
        assert "--classifier" in r.json()["error"]
        # a bad body is said as one (as with a classifier), not hidden behind "no classifier"
        for body, status, said in (
            ({"txt": "x"}, 400, "unknown field(s) 'txt'"),
            ({"text": 3}, 400, "must be a string"),
            ("[1, 2]", 400, "must be a JSON object"),
        ):
            r = c.post("/api/classify", **({"content": body} if isinstance(body, str) else {"json": body}))
            assert r.status_code == status and said in r.json()["error"], body
        assert c.get("/api/info").json()["classifier"] is None


def test_a_2mb_body_to_a_real_server_is_answered_413_not_reset(dirs):
    """Through uvicorn itself (the test client has no sockets): the server
    answers before it reads the body, and the client, still sending, must get
    that answer rather than a reset connection; the connection stays usable."""
    import http.client

    import uvicorn

    from minitransfer.apps.playground import Playground, create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(Playground(str(dirs / "lm"))), host="127.0.0.1", port=port, log_level="warning")
    )
    th = threading.Thread(target=server.run)
    th.start()
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        big = json.dumps({"text": "x" * (2 << 20)}).encode()
        for path in ("/api/generate", "/api/candidates", "/api/classify"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", path, body=big, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 413 and "over the playground's limit" in json.loads(r.read())["error"], path
            c.request(
                "POST",
                "/api/candidates",
                body=b'{"text": "hi", "top_k": 2}',
                headers={"Content-Type": "application/json"},
            )
            r = c.getresponse()
            assert r.status == 200 and len(json.loads(r.read())["candidates"]) == 2
            c.close()
    finally:
        server.should_exit = True
        th.join()


def _events(response_text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in response_text.split("\n\n") if line.startswith("data: ")]


def test_generate_streams_the_same_tokens_as_generate(client):
    body = {"text": "The movie was", "max_new_tokens": 8, "temperature": 0.9, "top_p": 0.9, "seed": 3}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = _events(r.text)
    assert ev[0]["start"] and ev[-1]["done"] and ev[-1]["tokens_per_second"] > 0
    ids = [e["id"] for e in ev if "id" in e]
    pg = client.pg
    ref = mt.generate.generate(
        pg.model, pg.tokenizer.encode("The movie was"), 8, temperature=0.9, top_p=0.9, seed=3, eos_id=pg.eos
    )
    assert ids == [t for t in ref if t != pg.eos]
    assert "".join(e["token"] for e in ev if "token" in e) == pg.tokenizer.decode(ids)
    assert ev[-1]["tokens"] == len(ids)  # the tokens shown (an end-of-text is not one)
    assert ev[-1]["ended"] == ("end-of-text" if pg.eos in ref else "max_new_tokens")


def test_chat_streams_the_reply_the_chat_command_would_write(client):
    from minitransfer.chat import prompt_ids, reply_stream

    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "How are you?"},
    ]
    body = {"messages": messages, "max_new_tokens": 6, "temperature": 0.9, "seed": 5}
    r = client.post("/api/chat", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = _events(r.text)
    assert ev[0] == {"start": True, "dropped": 0, "n_tokens": len(prompt_ids(messages, client.pg.tokenizer))}
    assert ev[-1]["done"] and "".join(e["token"] for e in ev if "token" in e) == ev[-1]["reply"]
    *_, (reply, why) = reply_stream(
        client.pg.model,
        client.pg.tokenizer,
        prompt_ids(messages, client.pg.tokenizer),
        6,
        temperature=0.9,
        top_k=None,
        top_p=0.95,
        seed=5,
    )
    assert (ev[-1]["reply"], ev[-1]["ended"]) == (reply, why)
    # a conversation too long for the 32 positions: the oldest messages go, and the first event says how many
    long = [{"role": ("user", "assistant")[k % 2], "content": f"message {k} of a long chat"} for k in range(7)]
    ev = _events(client.post("/api/chat", json={"messages": long, "max_new_tokens": 4}).text)
    assert ev[0]["dropped"] > 0 and ev[0]["n_tokens"] <= 28 and ev[-1]["done"]


@pytest.mark.parametrize(
    "body, said",
    [
        ({"text": "hi"}, "unknown field(s) 'text'"),
        ({}, "field 'messages' is missing"),
        ({"messages": []}, "'messages' is list"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]: unknown role 'system'"),
        ({"messages": [{"role": "user", "content": " "}]}, "messages[0]: the 'content' is empty"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "the last message must be the user's",
        ),
        ({"messages": [{"role": "user", "content": "word " * 40}], "max_new_tokens": 4}, "say it shorter"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "'temperature' must be a number"),
    ],
)
def test_chat_bad_requests_are_400_with_a_message(client, body, said):
    r = client.post("/api/chat", json=body)
    assert r.status_code == 400 and said in r.json()["error"], r.json()


def test_a_body_over_the_limit_is_413_before_it_is_tokenized(client, monkeypatch):
    import minitransfer.apps.playground

    monkeypatch.setattr(minitransfer.apps.playground, "MAX_BODY_BYTES", 1000)
    said = []
    monkeypatch.setattr(client.pg, "context", lambda *a: said.append(a) or 1 / 0)
    for path in ("/api/candidates", "/api/generate", "/api/classify", "/api/chat"):
        r = client.post(path, json={"text": "x" * 2000})
        assert r.status_code == 413 and "over the playground's limit of 1,000 bytes" in r.json()["error"], path
    # without a Content-Length (a chunked body): counted as it arrives
    r = client.post("/api/candidates", content=iter([b'{"text": "', b"y" * 2000, b'"}']))
    assert r.status_code == 413
    assert not said


def test_concurrent_requests_get_their_own_answers(client):
    texts = [f"number {i} is" for i in range(8)]
    expected = {t: client.post("/api/candidates", json={"text": t}).json() for t in texts}
    got, errors = {}, []

    def ask(t):
        try:
            got[t] = client.post("/api/candidates", json={"text": t}).json()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts * 3]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and got == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env=None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "minitransfer.cli", "playground", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("open http"):
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("playground did not start: " + "".join(lines) + proc.stderr.read())


def test_port_in_use_is_one_clear_line(dirs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "minitransfer.cli", "playground", "--model", str(dirs / "lm"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"minitransfer playground: error: port {port} on 127.0.0.1 is already in use; choose another with --port"
    )


def test_ctrl_c_exits_cleanly_and_exposure_warns(dirs):
    port = _free_port()
    proc, out = _start(["--model", str(dirs / "lm"), "--port", str(port), "--host", "0.0.0.0"])
    assert "warning: listening on 0.0.0.0" in out
    import httpx

    for _ in range(100):  # Ctrl-C while it serves (generation may still be compiling in the background)
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "playground: stopped" in rest and "Traceback" not in err


# ----------------------------------------------------------------------------
# The page in a real browser (Debian's chromium + chromium-driver, selenium)
# ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs headless Chromium: apt-get install chromium chromium-driver (.ci/run does)",
)
def test_page_in_headless_chromium(dirs, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from minitransfer.assets import shipped_checkpoint
    from minitransfer.cli import main

    model = shipped_checkpoint() or dirs / "lm"
    # a real (if quick) classifier for the second panel: a probe on 1,000 labelled tweets
    assert (
        main(
            [
                "finetune",
                "--model",
                str(model),
                "--mode",
                "probe",
                "--labels",
                "1000",
                "--steps",
                "150",
                "--max-len",
                "64",
                "--pooling",
                "mean",
                "--val-examples",
                "200",
                "--out",
                str(tmp_path / "probe"),
                "--no-progress",
            ]
        )
        == 0
    )
    clf = tmp_path / "probe" / "best"
    port = _free_port()
    proc, _ = _start(["--model", str(model), "--classifier", str(clf), "--port", str(port)])
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,900",
    ):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        tok = mt.load_tokenizer(model)

        def settled(text):  # the panels show the answer for exactly this text
            n = len(tok.encode(text))
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(f"{n} token(s) of context"))

        def rows(selector):  # (data-prob, data-token) of each bar, read in one go (bars are redrawn often)
            return driver.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map(li => [li.dataset.prob, li.dataset.token])",
                selector,
            )

        box = driver.find_element(By.ID, "text")
        box.send_keys("The acting was terrible and the plot")
        settled("The acting was terrible and the plot")
        bars = rows("#bars li")
        probs = [float(p) for p, _ in bars]
        assert len(probs) == 10 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        top = bars[0][1]
        before = box.get_attribute("value")
        box.send_keys(Keys.TAB)
        assert box.get_attribute("value") == before + top
        settled(before + top)
        classes = rows("#classes li")
        assert len(classes) == 3
        assert abs(sum(float(p) for p, _ in classes) - 1) < 1e-3
        grown = box.get_attribute("value")
        driver.find_element(By.ID, "continue").click()
        wait.until(lambda d: "tokens/s" in d.find_element(By.ID, "speed").text)
        assert len(box.get_attribute("value")) > len(grown)
        settled(box.get_attribute("value"))
        print("page:", driver.find_element(By.ID, "speed").text, "|", box.get_attribute("value")[:120])
        shot = tmp_path / "playground.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("MINITRANSFER_SAVE_SCREENSHOTS") == "1":
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copy(shot, REPO / "docs" / "playground.png")
        # the box's limit is what the server takes for this model; a refused setting's error stays on screen
        # (it was written over by the next refresh, under a "generating…" that never ended)
        n_positions = mt.load_pretrained(model).config.n_positions
        assert driver.find_element(By.ID, "maxnew").get_attribute("max") == str(min(200, n_positions - 1))
        driver.execute_script("document.getElementById('maxnew').value = '100000'")
        driver.find_element(By.ID, "continue").click()
        wait.until(lambda d: d.find_element(By.ID, "speed").text == "not generated")
        time.sleep(1.5)  # past the 150 ms a refresh would take to come back
        status = driver.find_element(By.ID, "status").text
        assert status.startswith("error: field 'max_new_tokens' must be between 1 and"), status
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
