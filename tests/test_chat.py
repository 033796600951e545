"""Conversation as a fine-tuning target: the format and its reply mask, the
data (jsonl and the packaged chatterbot corpus), bad input, the split by
conversation, finetune/evaluate --task chat, and the chat command."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.chat import (
    ASSISTANT,
    USER,
    ChatHead,
    ChatSplit,
    chat_loop,
    chatterbot_conversations,
    encode_chat,
    encode_conversation,
    fit_history,
    load_chat_dataset,
    prompt_ids,
    reply_stream,
)
from minitransfer.cli import main
from minitransfer.data import DataError
from minitransfer.heads import HEADS
from minitransfer.model import NextWordHead
from minitransfer.tasks import TASKS, task_of
from tests.conftest import REPO

TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
SHIPPED = REPO / "checkpoints" / "minigpt2-imdb"


def _conv(*turns):
    """_conv("hi", "hello", "how are you", "fine"): user, assistant, user, ..."""
    return [{"role": ("user", "assistant")[k % 2], "content": t} for k, t in enumerate(turns)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    words = "hello there how are you fine thanks good day what is your name my name is bot".split()
    return [
        {
            "messages": _conv(
                *(
                    " ".join(rng.choice(words, size=int(rng.integers(1, 5)))) + f" {i}"
                    for _ in range(int(rng.integers(1, 3)) * 2)
                )
            )
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, gpt2_tokenizer):
    d = tmp_path_factory.mktemp("chat") / "lm"
    mt.save_pretrained(mt.GPT2.language_model(mt.GPT2Config(**TINY), seed=3), d, gpt2_tokenizer)
    return d


# ----------------------------------------------------------------------------
# The format and the mask
# ----------------------------------------------------------------------------


def test_a_conversation_becomes_the_documented_tokens_and_mask(gpt2_tokenizer):
    tok = gpt2_tokenizer
    eos = tok.eos_token_id
    ids, flags = encode_conversation(_conv("Hi there", "Hello!", "How are you?", "Fine."), tok)
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    want = (
        [eos]
        + enc("User: Hi there\n")
        + enc("Assistant:")
        + enc(" Hello!")
        + [eos]
        + enc("User: How are you?\n")
        + enc("Assistant:")
        + enc(" Fine.")
        + [eos]
    )
    assert ids == want
    # the reply flags: exactly the replies' tokens and the end-of-text closing each
    reply = [t for t, f in zip(ids, flags, strict=True) if f]
    assert reply == enc(" Hello!") + [eos] + enc(" Fine.") + [eos]
    assert tok.decode(ids) == (
        "<|endoftext|>User: Hi there\nAssistant: Hello!<|endoftext|>User: How are you?\nAssistant: Fine.<|endoftext|>"
    )
    # what chat feeds the model before a reply is the training prefix up to that reply
    assert prompt_ids(_conv("Hi there"), tok) == want[: len([eos] + enc("User: Hi there\n") + enc("Assistant:"))]

    e = encode_chat(ChatSplit([_conv("Hi there", "Hello!", "How are you?", "Fine.")]), tok, 48)
    L = len(ids)
    assert e.targets[0, : L - 1].tolist() == ids[1:] and e.attention_mask[0].sum() == L
    # position t predicts token t + 1: counted where that token is a reply's
    assert e.loss_mask[0, : L - 1].tolist() == flags[1:] and e.loss_mask[0, L - 1 :].sum() == 0


def test_the_loss_ignores_the_prompt_tokens_and_counts_the_replies(gpt2_tokenizer):
    tok = gpt2_tokenizer
    e = encode_chat(ChatSplit([_conv("Hi there", "Hello!", "How are you?", "Fine."), _conv("Yo", "Hey")]), tok, 40)
    logits = np.random.default_rng(0).normal(size=(*e.targets.shape, 500)).astype(np.float32)
    batch = {"targets": e.targets % 500, "loss_mask": e.loss_mask}
    head = ChatHead()
    loss = float(head.loss(logits, batch))
    # by hand: the mean cross-entropy over the reply positions of both conversations together
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    m = e.loss_mask.astype(bool)
    assert abs(loss - float(-picked[m].mean())) < 1e-5
    # targets of prompt positions changed: the same loss; one reply target changed: another loss
    prompt_pos, reply_pos = np.argwhere(~m & (e.attention_mask == 1)), np.argwhere(m)
    other = {k: v.copy() for k, v in batch.items()}
    for i, t in prompt_pos:
        other["targets"][i, t] = (other["targets"][i, t] + 7) % 500
    assert float(head.loss(logits, other)) == loss
    other = {k: v.copy() for k, v in batch.items()}
    i, t = reply_pos[0]
    other["targets"][i, t] = (other["targets"][i, t] + 7) % 500
    assert abs(float(head.loss(logits, other)) - loss) > 1e-4
    # the language model's loss (every position) is not the chat loss
    assert abs(float(NextWordHead().loss(logits, batch)) - loss) > 1e-3


def test_chat_head_is_registered_a_task_and_keeps_the_tied_head(tmp_path, gpt2_tokenizer):
    assert HEADS["chat"] is ChatHead and TASKS["chat"].head is ChatHead and task_of(ChatHead()).name == "chat"
    lm = mt.GPT2.language_model(mt.GPT2Config(**TINY), seed=1)
    model = mt.GPT2(lm.backbone, ChatHead())
    ids = np.array([[1, 2, 3]], np.int32)
    assert np.array_equal(np.asarray(model(ids)), np.asarray(lm(ids)))  # the next-word logits, (1, 3, V)
    mt.save_pretrained(model, tmp_path / "m", gpt2_tokenizer)
    again = mt.load_pretrained(tmp_path / "m")
    assert type(again.head) is ChatHead and np.array_equal(np.asarray(again(ids)), np.asarray(lm(ids)))


# ----------------------------------------------------------------------------
# Data: jsonl, the chatterbot corpus, bad input, the split
# ----------------------------------------------------------------------------


def test_chatterbot_yaml_becomes_alternating_messages(tmp_path, monkeypatch):
    import minitransfer.chat as chat

    d = tmp_path / "english"
    d.mkdir()
    (d / "a.yml").write_text(
        "categories:\n- x\nconversations:\n- - Do you like cheese?\n  - yes\n"
        "- - Hello\n  - Hi\n  - How are you?\n  - no\n- - Only one utterance\n"
    )
    (d / "b.yml").write_text("conversations:\n- - Is 42 a number?\n  - 42\n- - ''\n  - empty question\n")
    monkeypatch.setattr(chat, "chatterbot_dir", lambda language="english": d)
    notes = []
    convs = chatterbot_conversations("english", notes)
    # strings stay strings (YAML 1.1 would read yes/no as booleans and 42 as a number)
    assert convs == [
        _conv("Do you like cheese?", "yes"),
        _conv("Hello", "Hi", "How are you?", "no"),
        _conv("Is 42 a number?", "42"),
    ]
    assert (
        "2 files; 1 single-utterance conversation(s) skipped (no reply to learn); 1 conversation(s) with an "
        "empty or non-text utterance skipped"
    ) in notes[0]


def test_the_packaged_corpus_loads_offline_split_by_conversation():
    d = load_chat_dataset("chatterbot")
    again = load_chat_dataset("chatterbot:english")
    assert d.train.conversations == again.train.conversations  # the same default, the same draw
    key = lambda c: tuple((m["role"], m["content"]) for m in c)  # noqa: E731
    parts = [set(map(key, s.conversations)) for s in (d.train, d.validation, d.test)]
    assert all(
        len(p) == len(s) for p, s in zip(parts, (d.train, d.validation, d.test), strict=True)
    )  # repeats kept once
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(d.train) > 500 and abs(len(d.test) - len(d.validation)) <= 1
    assert any("repeated conversation(s) kept once" in n for n in d.notes)
    assert all(c[0]["role"] == "user" and c[1]["role"] == "assistant" for c in d.test.conversations)


def test_split_is_by_conversation_and_seeded(tmp_path):
    f = _write_jsonl(tmp_path / "c.jsonl", _rows(60))
    a, b, c = (load_chat_dataset(f"jsonl:{f}", split_seed=s) for s in (0, 0, 1))
    assert (len(a.train), len(a.validation), len(a.test)) == (48, 6, 6)
    assert a.test.conversations == b.test.conversations and a.test.conversations != c.test.conversations
    assert a.fields == {"split_seed": 0}
    # every conversation lands whole in one split: its turns are never separated
    source = [r["messages"] for r in _rows(60)]
    got = a.train.conversations + a.validation.conversations + a.test.conversations
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, source))
    # a folder with train/test files: validation drawn from train, test as given
    d = tmp_path / "dir"
    d.mkdir()
    _write_jsonl(d / "train.jsonl", _rows(20, 1))
    _write_jsonl(d / "test.jsonl", _rows(5, 2))
    ds = load_chat_dataset(f"jsonl:{d}")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (18, 2, 5)
    assert ds.test.conversations == [r["messages"] for r in _rows(5, 2)]


@pytest.mark.parametrize(
    "row, said",
    [
        ({"messages": _conv("hi")}, r"c.jsonl, line 2: no assistant message"),
        (
            {"messages": [{"role": "system", "content": "be nice"}, *_conv("hi", "yo")]},
            r"c.jsonl, line 2, messages\[0\]: unknown role 'system'; expected 'user' or 'assistant'",
        ),
        ({"messages": _conv("hi", "  ")}, r"c.jsonl, line 2, messages\[1\]: the 'content' is empty"),
        ({"messages": [{"role": "user"}]}, r"c.jsonl, line 2, messages\[0\]: no field 'content'"),
        ({"messages": _conv("hi", 3)}, r"messages\[1\]: the 'content' is int"),
        ({"turns": _conv("hi", "yo")}, r"c.jsonl, line 2: no field 'messages'"),
        ({"messages": []}, r"c.jsonl, line 2: 'messages' is list"),
    ],
)
def test_bad_rows_are_errors_naming_file_line_and_field(tmp_path, row, said):
    f = _write_jsonl(tmp_path / "c.jsonl", [{"messages": _conv("hi", "yo")}, row, *_rows(5)])
    with pytest.raises(DataError, match=said):
        load_chat_dataset(f"jsonl:{f}")


def test_bad_specs_and_too_few_conversations(tmp_path):
    with pytest.raises(DataError, match="`task` chat reads 'chatterbot"):
        load_chat_dataset("tweets")
    with pytest.raises(DataError, match="chatterbot:klingon: no such language .* english"):
        load_chat_dataset("chatterbot:klingon")
    f = _write_jsonl(tmp_path / "two.jsonl", _rows(2))
    with pytest.raises(DataError, match="too few to split"):
        load_chat_dataset(f"jsonl:{f}")


def test_a_conversation_longer_than_the_context_is_skipped_and_counted(gpt2_tokenizer):
    split = ChatSplit([_conv("hi", "yo"), _conv("word " * 50, "ok"), _conv("a", "b")])
    e = encode_chat(split, gpt2_tokenizer, 24)
    assert len(e) == 2 and e.n_skipped == 1
    assert e.notes == ["1 of 3 conversation(s) longer than `max_len` 24 tokens skipped"]
    with pytest.raises(DataError, match="no conversation of 1 fits `max_len` 24 tokens"):
        encode_chat(ChatSplit([_conv("word " * 50, "ok")]), gpt2_tokenizer, 24)


# ----------------------------------------------------------------------------
# finetune, evaluate
# ----------------------------------------------------------------------------


def test_finetune_and_evaluate_task_chat_end_to_end(tmp_path, lm_dir, capsys):
    f = _write_jsonl(tmp_path / "c.jsonl", _rows(40))
    run = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                "--task",
                "chat",
                "--model",
                str(lm_dir),
                "--mode",
                "full",
                "--data",
                f"jsonl:{f}",
                "--steps",
                "4",
                "--batch-size",
                "8",
                "--max-len",
                "48",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "split 80/10/10 by conversation" in out and "best validation reply perplexity" in out
    assert "test reply perplexity" in out and "reply next-token accuracy" in out
    result = json.loads((run / "result.json").read_text())
    saved = json.loads((run / "best" / "config.json").read_text())["minitransfer"]
    assert saved["head"] == "chat" and saved["data"] == f"jsonl:{f}" and saved["user_marker"] == USER
    # lower perplexity is better: the best step is the one with the lowest validation perplexity
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val_perplexity"] for r in logged if "val_perplexity" in r}
    assert result["best_step"] == min(val, key=val.get)
    # evaluate reads the task from the head and the data from the model; the numbers are finetune's
    assert main(["evaluate", "--model", str(run / "best"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert abs(m["perplexity"] - result["test"]["perplexity"]) < 1e-3 * m["perplexity"]
    assert m["perplexity"] == pytest.approx(np.exp(m["loss"])) and 0 <= m["accuracy"] <= 1 and m["n"] == 4
    # zero-shot: the language model it started from, scored on the same test conversations
    assert main(["evaluate", "--model", str(lm_dir), "--task", "chat", "--data", f"jsonl:{f}", "--json"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert zero["n"] == m["n"] and zero["n_tokens"] == m["n_tokens"] and zero["perplexity"] != m["perplexity"]
    assert main(["evaluate", "--model", str(lm_dir), "--data", f"jsonl:{f}"]) == 2
    assert "--task chat" in capsys.readouterr().err


def test_compare_task_chat_pairs_modes_by_seed_and_reads_finished_runs_back(tmp_path, lm_dir, capsys):
    f = _write_jsonl(tmp_path / "c.jsonl", _rows(40))
    argv = [
        "compare",
        "--task",
        "chat",
        "--model",
        str(lm_dir),
        "--data",
        f"jsonl:{f}",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--max-len",
        "48",
        "--out",
        str(tmp_path / "cmp"),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert set(s["table"]) == {"scratch", "full"} and len(s["table"]["full"]["perplexity_per_seed"]) == 2
    g = s["gains"][0]
    assert (g["mode"], g["over"]) == ("full", "scratch")
    # the ratio is that of the per-seed test perplexities, paired by seed (the losses are their logs)
    full, scratch = (np.asarray(s["table"][m]["perplexity_per_seed"]) for m in ("full", "scratch"))
    assert g["perplexity_ratio"]["mean"] == pytest.approx(np.exp(np.mean(np.log(full / scratch))), rel=1e-6)
    assert "zero-shot (no chat fine-tuning)" in out and "full vs scratch: test perplexity x" in out
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("mode,seed,n_train") and len(rows) == 5
    assert main(argv) == 0  # again: every run read back, the same summary
    assert "finished earlier: read back" in capsys.readouterr().out
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["table"] == s["table"]
    # what the chat compare does not read is refused, before any work
    assert main([*argv[:-3], "--out", str(tmp_path / "other"), "--budgets", "100"]) == 2
    assert "--budgets: not read by compare --task chat" in capsys.readouterr().err
    assert main([*argv[:-3], "--out", str(tmp_path / "other"), "--modes", "probe"]) == 2
    assert "the chat head cannot use" in capsys.readouterr().err


# ----------------------------------------------------------------------------
# The chat command
# ----------------------------------------------------------------------------


def _chat(monkeypatch, capsys, model, lines: str, *options):
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["chat", "--model", str(model), *options]) == 0
    return capsys.readouterr().out


def test_chat_command_on_the_shipped_stand_in(monkeypatch, capsys):
    out = _chat(monkeypatch, capsys, SHIPPED, "Hello\nWhat is your favourite movie?\n", "--max-new-tokens", "12")
    assert "not fine-tuned for chat" in out  # the stand-in is a language model
    assert out.count(f"{USER} ") == 3 and out.count(f"{ASSISTANT} ") == 2  # two exchanges, then end of input
    assert "Hello\n" in out and out.rstrip().endswith("(end of input: chat ended)")
    again = _chat(monkeypatch, capsys, SHIPPED, "Hello\nWhat is your favourite movie?\n", "--max-new-tokens", "12")
    assert again == out  # the same seed, the same replies
    # an empty line ends it too, before anything else is read
    out = _chat(monkeypatch, capsys, SHIPPED, "Hi\n\nnever read\n", "--max-new-tokens", "4")
    assert "(empty line: chat ended)" in out and "never read" not in out


def test_chat_keeps_the_history_within_the_context_and_says_what_it_dropped(lm_dir, monkeypatch, capsys):
    lines = "".join(f"message number {i} is a little longer than the others\n" for i in range(5))
    out = _chat(monkeypatch, capsys, lm_dir, lines, "--max-new-tokens", "6", "--greedy")
    assert "(history: the oldest" in out and "message(s) dropped to fit the model's 64 positions)" in out
    assert out.count(f"{ASSISTANT} ") == 5
    # a message that cannot fit even alone is refused, and the chat goes on
    out = _chat(monkeypatch, capsys, lm_dir, "word " * 80 + "\nhi\n", "--max-new-tokens", "6")
    assert "kept for the reply (--max-new-tokens): say it shorter" in out and out.count(f"{ASSISTANT} ") == 1


def test_fit_history_drops_the_oldest_turns_only(gpt2_tokenizer):
    history = _conv("one two three", "four five", "six seven", "eight", "nine ten eleven")
    full = len(prompt_ids(history, gpt2_tokenizer))
    kept, dropped = fit_history(history, gpt2_tokenizer, full)
    assert dropped == 0 and kept == history
    kept, dropped = fit_history(history, gpt2_tokenizer, full - 1)
    assert dropped == 2 and kept == history[2:]  # a whole exchange: what is kept starts with the user's turn
    assert len(prompt_ids(kept, gpt2_tokenizer)) <= full - 1
    kept, dropped = fit_history(history, gpt2_tokenizer, 3)
    assert kept == history[-1:]  # the newest message always stays (the caller says if it alone is too long)


def test_ctrl_c_ends_the_chat_cleanly(lm_dir, gpt2_tokenizer):
    model = mt.load_pretrained(lm_dir)
    said = []

    def read(prompt):
        if said:
            raise KeyboardInterrupt
        said.append(prompt)
        return "hello"

    out = []
    write = lambda *a, **k: out.append("".join(map(str, a)) + k.get("end", "\n"))  # noqa: E731
    assert chat_loop(model, gpt2_tokenizer, max_new_tokens=4, seed=0, read=read, write=write, greedy=True) == 0
    assert out[-1].strip() == "(Ctrl-C: chat ended)" and any(o.startswith(ASSISTANT) for o in out)


def test_a_reply_ends_at_a_role_marker_or_end_of_text(gpt2_tokenizer, monkeypatch):
    import minitransfer.generate as generate

    tok = gpt2_tokenizer

    def scripted(text, eos=False):
        ids = tok.encode(text) + ([tok.eos_token_id] if eos else [])
        return lambda model, prompt, n, eos_id=None, **kw: iter(ids)

    monkeypatch.setattr(generate, "stream", scripted(" Fine, thanks.\nUser: and you?\nAssistant: meh"))
    *pieces, (text, why) = reply_stream(None, tok, [1], 40)
    assert (text, why) == ("Fine, thanks.", "role marker") and "".join(pieces) == text
    monkeypatch.setattr(generate, "stream", scripted(" Two\nlines here", eos=True))
    *pieces, (text, why) = reply_stream(None, tok, [1], 40)
    assert (text, why) == ("Two\nlines here", "end-of-text") and "".join(pieces) == text
    monkeypatch.setattr(generate, "stream", scripted(" User: I am writing your side"))  # nothing of it shown
    *pieces, (text, why) = reply_stream(None, tok, [1], 40)
    assert (text, why) == ("", "role marker") and "".join(pieces) == ""
    monkeypatch.setattr(generate, "stream", scripted(" and on and on"))
    *_, (text, why) = reply_stream(None, tok, [1], 40)
    assert why == "max-new-tokens"


@pytest.mark.slow
def test_chat_on_a_random_checkpoint_of_the_124m_shape(random_124m_dir, monkeypatch, capsys):
    """GPT-2 small's shape (12 layers, 768 wide, 12 heads, 1,024 positions,
    the 50,257-token vocabulary), random weights: the chat command's prompt,
    cache and streaming at full size (a few tokens per reply, to stay cheap)."""
    out = _chat(monkeypatch, capsys, random_124m_dir, "Hello there\nHow are you?\n", "--max-new-tokens", "3")
    assert "it reads 1024 tokens of conversation" in out and out.count(f"{ASSISTANT} ") == 2
    assert "(history:" not in out and out.rstrip().endswith("(end of input: chat ended)")


def test_data_command_counts_conversations(tmp_path, capsys):
    f = _write_jsonl(
        tmp_path / "c.jsonl",
        [{"messages": _conv("hi there", "hello you", "bye", "bye now")}] * 1
        + [{"messages": _conv(f"q {i}", f"a {i}")} for i in range(9)],
    )
    assert main(["data", "--task", "chat", f"jsonl:{f}", "--tokenizer", str(SHIPPED), "--max-len", "8"]) == 0
    out = capsys.readouterr().out
    # 10 conversations, 22 messages, 11 replies, 7 + 9 x 4 words; split 8/1/1
    assert "all            10 conversations,     22 messages,     11 replies,     43 words" in out
    assert "train           8 conversations" in out
    assert "split 80/10/10 by conversation" in out and "--max-len 8 would skip" in out


def test_compare_task_chat_has_its_own_default_folders(tmp_path, lm_dir, monkeypatch):
    import minitransfer.chat_compare

    monkeypatch.chdir(tmp_path)
    f = _write_jsonl(tmp_path / "c.jsonl", _rows(40))
    seen = []
    monkeypatch.setattr(minitransfer.chat_compare, "compare_chat", lambda *a, **k: seen.append(a[4]) or 1 / 0)
    for quick, folder in ((["--quick"], "runs/compare-chat-quick"), ([], "runs/compare-chat")):
        with pytest.raises(ZeroDivisionError):
            main(
                ["compare", "--task", "chat", "--model", str(lm_dir), "--data", f"jsonl:{f}", "--max-len", "48", *quick]
            )
        assert seen.pop() == folder
