// minitransfer playground: talks to /api/* of the server that serves this page.
"use strict";
const $ = (id) => document.getElementById(id);
const text = $("text"), bars = $("bars"), classes = $("classes"), statusLine = $("status");
let candidates = [], active = 0, debounce = null, requestNo = 0, info = null, streaming = null;

function visible(tok) {
  // spaces and line breaks made visible, so " the" and "the" look different
  const span = document.createElement("span");
  span.className = "tok";
  for (const ch of tok) {
    if (ch === " ") { const v = document.createElement("span"); v.className = "vis"; v.textContent = "·"; span.appendChild(v); }
    else if (ch === "\n") { const v = document.createElement("span"); v.className = "vis"; v.textContent = "⏎"; span.appendChild(v); }
    else span.appendChild(document.createTextNode(ch));
  }
  return span;
}

function row(label, prob, onclick) {
  const li = document.createElement("li");
  const track = document.createElement("span"); track.className = "track";
  const fill = document.createElement("span"); fill.className = "fill";
  fill.style.width = (100 * prob).toFixed(1) + "%";
  track.appendChild(fill);
  const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = (100 * prob).toFixed(1) + "%";
  li.appendChild(label); li.appendChild(track); li.appendChild(pct);
  li.dataset.prob = String(prob);
  if (onclick) li.addEventListener("mousedown", (e) => { e.preventDefault(); onclick(); });
  return li;
}

function drawCandidates() {
  bars.replaceChildren(...candidates.map((c, i) => {
    const li = row(visible(c.token), c.prob, () => accept(i));
    li.dataset.token = c.token;
    if (i === active) li.classList.add("active");
    return li;
  }));
}

async function post(path, body, signal) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

async function refresh() {
  const mine = ++requestNo, t = text.value;
  try {
    const jobs = [post("/api/candidates", { text: t, top_k: 10 })];
    if (info && info.classifier) jobs.push(post("/api/classify", { text: t }));
    const [cand, cls] = await Promise.all(jobs);
    if (mine !== requestNo) return;  // a newer keystroke already asked
    candidates = cand.candidates; active = 0; drawCandidates();
    const notes = [];
    if (cand.unconditional) notes.push("empty text: the model's unconditional guesses (context = end-of-text token)");
    else notes.push(cand.n_tokens + " token(s) of context");
    if (cand.dropped) notes.push(cand.dropped + " oldest token(s) dropped: the model reads at most " + info.n_positions);
    statusLine.textContent = notes.join(" · ");
    statusLine.classList.toggle("warn", cand.dropped > 0);
    if (cls) {
      classes.replaceChildren(...cls.labels.map((lab, i) => row(visible(lab), cls.probs[i])));
      if (cls.unconditional) statusLine.textContent += " · classifier: no text, so its answer for the end-of-text token alone";
      if (cls.ignored) statusLine.textContent += " · classifier: " + cls.ignored + " token(s) beyond its max_len ignored";
    }
  } catch (e) {
    statusLine.textContent = "error: " + e.message; statusLine.classList.add("warn");
  }
}

function schedule() { clearTimeout(debounce); debounce = setTimeout(refresh, 150); }

function accept(i) {
  if (!candidates[i]) return;
  text.value += candidates[i].token;
  text.focus();
  refresh();
}

text.addEventListener("input", schedule);
text.addEventListener("keydown", (e) => {
  if (e.key === "Tab" && candidates.length) { e.preventDefault(); accept(active); }
  else if (e.key === "ArrowDown" && e.altKey && candidates.length) { e.preventDefault(); active = Math.min(active + 1, candidates.length - 1); drawCandidates(); }
  else if (e.key === "ArrowUp" && e.altKey && candidates.length) { e.preventDefault(); active = Math.max(active - 1, 0); drawCandidates(); }
});

async function continueText() {
  const num = (id) => Number($(id).value);
  const body = { text: text.value, max_new_tokens: num("maxnew"), temperature: num("temperature"),
                 top_p: num("topp"), seed: num("seed") };
  if (num("topk") > 0) body.top_k = num("topk");
  let failed = false;
  streaming = new AbortController();
  $("continue").disabled = true; $("stop").disabled = false; $("speed").textContent = "generating…";
  try {
    const r = await fetch("/api/generate", { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(body), signal: streaming.signal });
    if (!r.ok) throw new Error((await r.json()).error);
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut); buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.token !== undefined) { text.value += ev.token; text.scrollTop = text.scrollHeight; }
        if (ev.start && ev.dropped) statusLine.textContent = ev.dropped + " oldest token(s) dropped to make room";
        if (ev.done) $("speed").textContent = ev.tokens + " tokens, " + (ev.tokens_per_second || 0).toFixed(1) + " tokens/s"
                                              + (ev.ended === "end-of-text" ? " (ended at end-of-text)" : "");
      }
    }
  } catch (e) {
    if (e.name === "AbortError") $("speed").textContent = "stopped";
    else {  // said, and left on screen: refreshing the candidates now would write over it
      failed = true; $("speed").textContent = "not generated";
      statusLine.textContent = "error: " + e.message; statusLine.classList.add("warn");
    }
  } finally {
    streaming = null; $("continue").disabled = false; $("stop").disabled = true;
    if (!failed) refresh();
  }
}

// the chat panel: the conversation lives here, and every reply is asked for with all of it (/api/chat)
let chatMessages = [], chatting = false;

function chatLine(role, content) {
  const p = document.createElement("p"); p.className = role;
  const who = document.createElement("span"); who.className = "role"; who.textContent = role === "user" ? "User:" : "Assistant:";
  const said = document.createElement("span"); said.textContent = content;
  p.appendChild(who); p.appendChild(said); $("chat-log").appendChild(p);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return said;
}

async function sendChat() {
  const said = $("chat-text").value.trim();
  if (!said || chatting) return;
  chatting = true; $("chat-send").disabled = true; $("chat-text").value = "";
  chatMessages.push({ role: "user", content: said }); chatLine("user", said);
  const num = (id) => Number($(id).value);
  const body = { messages: chatMessages, max_new_tokens: num("maxnew"), temperature: num("temperature"),
                 top_p: num("topp"), seed: num("seed") + chatMessages.length };
  if (num("topk") > 0) body.top_k = num("topk");
  const reply = chatLine("assistant", "");
  try {
    const r = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error((await r.json()).error);
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut); buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.token !== undefined) reply.textContent += ev.token;
        if (ev.start) $("chat-status").textContent = ev.dropped ? ev.dropped + " oldest message(s) dropped to fit the model's "
                                                                  + info.n_positions + " positions" : "";
        if (ev.done) {
          if (ev.reply) chatMessages.push({ role: "assistant", content: ev.reply });
          if (ev.ended === "max-new-tokens") reply.textContent += " [cut at max new tokens]";
        }
      }
    }
  } catch (e) {
    chatMessages.pop();  // the message that got no reply is not part of the conversation
    reply.textContent = "error: " + e.message;
  } finally {
    chatting = false; $("chat-send").disabled = false; $("chat-text").focus();
  }
}

$("chat-send").addEventListener("click", sendChat);
$("chat-text").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendChat(); } });
$("chat-clear").addEventListener("click", () => { chatMessages = []; $("chat-log").replaceChildren(); $("chat-status").textContent = ""; });

$("continue").addEventListener("click", continueText);
$("stop").addEventListener("click", () => { if (streaming) streaming.abort(); });

(async () => {
  info = await (await fetch("/api/info")).json();
  $("nextword-which").textContent = info.model + " · " + info.shape + " · " + info.next_word_head;
  const most = Math.min(Number($("maxnew").max), info.n_positions - 1);  // what the server takes for this model
  $("maxnew").max = String(most);
  if (Number($("maxnew").value) > most) $("maxnew").value = String(most);
  $("chat-which").textContent = info.chat_model ? "a chat model (finetune --task chat)"
    : "a language model not fine-tuned for chat (finetune --task chat makes one): expect continuations more than replies";
  if (info.classifier) {
    $("class-panel").hidden = false;
    const c = info.classifier;
    $("class-which").textContent = c.path + " · same architecture, " + c.head + " · trained in mode " + c.mode;
  }
  refresh();
})();
