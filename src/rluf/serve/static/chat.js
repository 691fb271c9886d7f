// The chat page. Everything from the model or the user is put in the page with textContent, never
// innerHTML, so an answer containing HTML or a <script> tag is shown as text and never runs.
"use strict";
(function () {
  // [type, name, SVG path]: an inline icon and a text name, so no button depends on an emoji font
  const REACTIONS = [
    ["love", "Love", "M12 21l-1.5-1.3C5.4 15.1 2 12.1 2 8.4 2 5.4 4.4 3 7.4 3c1.7 0 3.4.8 4.6 2.1C13.2 3.8 " +
      "14.9 3 16.6 3 19.6 3 22 5.4 22 8.4c0 3.7-3.4 6.7-8.5 11.3L12 21z"],
    ["like", "Like", "M2 21h4V9H2v12zm20-11c0-1.1-.9-2-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.5-1.1L13.2 1 " +
      "6.6 7.6C6.2 8 6 8.5 6 9v10c0 1.1.9 2 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7c.1-.2.2-.5.2-.8v-2z"],
    ["dislike", "Dislike", "M16 3H7c-.8 0-1.5.5-1.8 1.2l-3 7c-.1.2-.2.5-.2.8v2c0 1.1.9 2 2 2h6.3l-1 " +
      "4.6v.3c0 .4.2.8.5 1.1l1 1 6.6-6.6c.4-.4.6-.9.6-1.4V5c0-1.1-.9-2-2-2zm4 0v12h4V3h-4z"],
  ];
  const SVG = "http://www.w3.org/2000/svg";
  const log = document.getElementById("log");
  const form = document.getElementById("form");
  const input = document.getElementById("input");
  const send = document.getElementById("send");
  const status = document.getElementById("status");
  let history = [];            // [{role, content}] as logged by the gateway
  let conversationId = null;   // set by the first answer

  function bubble(role, text) {
    const div = document.createElement("div");
    div.className = "msg " + role;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    div.appendChild(body);
    log.appendChild(div);
    div.scrollIntoView({ block: "end" });
    return div;
  }

  async function react(button, messageId, type) {
    const on = button.getAttribute("aria-pressed") !== "true";
    const resp = await fetch("/v1/reactions", {
      method: on ? "POST" : "DELETE", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message_id: messageId, type: type }),
    });
    if (resp.ok) { button.setAttribute("aria-pressed", on ? "true" : "false"); status.textContent = ""; }
    else { status.textContent = await errorText(resp); }
  }

  function addReactions(div, messageId) {
    div.dataset.messageId = messageId;
    const bar = document.createElement("div");
    bar.className = "reactions";
    for (const [type, name, path] of REACTIONS) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "react-" + type;
      const icon = document.createElementNS(SVG, "svg");
      icon.setAttribute("viewBox", "0 0 24 24");
      icon.setAttribute("aria-hidden", "true");  // the text below is the button's accessible name
      const shape = document.createElementNS(SVG, "path");
      shape.setAttribute("d", path);
      icon.appendChild(shape);
      const label = document.createElement("span");
      label.textContent = name;
      b.append(icon, label);
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => react(b, messageId, type));
      bar.appendChild(b);
    }
    div.appendChild(bar);
  }

  async function errorText(resp) {
    try { const j = await resp.json(); return j.error.message; } catch (e) { return "error " + resp.status; }
  }

  // Reads the SSE stream; returns {id, text, conversation} once the gateway has sent [DONE], i.e. after it
  // logged the turn.
  async function readStream(resp, target) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", id = null, text = "", conversation = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the answer stopped before it was complete");
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return { id: id, text: text, conversation: conversation };
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        id = chunk.id;
        if (chunk.conversation_id) conversation = chunk.conversation_id;
        const delta = chunk.choices[0].delta.content;
        if (delta) { text += delta; target.textContent = text; }
      }
    }
  }

  async function submit(ev) {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send.disabled = true;
    status.textContent = "";
    bubble("user", text);
    const messages = history.concat([{ role: "user", content: text }]);
    const div = bubble("assistant", "\u2026");
    const target = div.querySelector(".text");
    try {
      const body = { messages: messages, stream: true };
      if (conversationId) body.conversation_id = conversationId;
      const resp = await fetch("/v1/chat/completions", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (!resp.ok) throw new Error(await errorText(resp));
      const answer = await readStream(resp, target);
      history = messages.concat([{ role: "assistant", content: answer.text }]);
      conversationId = answer.conversation;  // only now: an unfinished answer was not logged
      addReactions(div, answer.id);
    } catch (e) {
      div.classList.add("failed");
      target.textContent = "Not answered: " + e.message;
    } finally {
      send.disabled = false;
      input.focus();
    }
  }

  form.addEventListener("submit", submit);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });
  document.getElementById("new").addEventListener("click", () => {
    history = []; conversationId = null; log.textContent = ""; status.textContent = "";
  });
})();
