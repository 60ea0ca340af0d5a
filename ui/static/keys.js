// The key browser: list keys by prefix a page at a time, show a value
// (text, or hex when it is not printable text) with its revisions, put and
// delete.

import { call, textToB64, b64ToBytes } from "./api.js";
import { h, $ } from "./dom.js";

const pageSize = 50;
let listing = null; // {prefix, token}: the range being paged
let shown = null; // key (base64) whose value is shown

export function bindKeys() {
  $("#range-form").addEventListener("submit", (e) => {
    e.preventDefault();
    list($("#prefix").value, false);
  });
  $("#more").addEventListener("click", () => list(listing.prefix, true));
  $("#put-form").addEventListener("submit", (e) => {
    e.preventDefault();
    put($("#put-key").value, $("#put-value").value);
  });
  $("#delete").addEventListener("click", () => del(shown));
}

function say(text, ok) {
  const el = $("#keys-result");
  el.textContent = text;
  el.className = ok ? "result ok" : "result error";
}

async function list(prefix, more) {
  const req = { limit: pageSize, keysOnly: true };
  if (prefix) req.prefix = textToB64(prefix);
  if (more) req.pageToken = listing.token;
  let resp;
  try {
    resp = await call("KV/Range", req);
  } catch (e) {
    say(`list: ${e.message}`, false);
    return;
  }
  const body = $("#keys tbody");
  if (!more) body.replaceChildren();
  for (const kv of resp.kvs || []) {
    body.append(h("tr", { dataset: { key: show(b64ToBytes(kv.key)) } },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => get(kv.key) }, show(b64ToBytes(kv.key)))),
      h("td", {}, kv.modRevision || "0")));
  }
  listing = { prefix, token: resp.nextPageToken };
  $("#more").hidden = !resp.more;
  const n = body.children.length;
  $("#keys-note").textContent = `${n} key${n === 1 ? "" : "s"}${resp.more ? " so far" : ""} at revision ${resp.revision || 0}`;
}

async function get(keyB64) {
  let resp;
  try {
    resp = await call("KV/Get", { key: keyB64 });
  } catch (e) {
    say(`get: ${e.message}`, false);
    return;
  }
  const kv = resp.kv;
  $("#value").hidden = false;
  $("#value-key").textContent = show(b64ToBytes(keyB64));
  if (!kv) {
    shown = null;
    $("#value-meta").textContent = "not found (deleted since the listing?)";
    $("#value-body").textContent = "";
    return;
  }
  shown = keyB64;
  const value = b64ToBytes(kv.value);
  $("#value-meta").textContent = `created at revision ${kv.createRevision || 0}, modified at ${kv.modRevision || 0}, version ${kv.version || 0}, ${value.length} bytes${isText(value) ? "" : ", shown in hex"}`;
  $("#value-body").textContent = isText(value) ? new TextDecoder().decode(value) : hex(value);
}

async function put(key, value) {
  try {
    const resp = await call("KV/Put", { key: textToB64(key), value: textToB64(value) });
    say(`put ${key}: revision ${resp.revision}`, true);
    await get(textToB64(key));
  } catch (e) {
    say(`put ${key}: ${e.message}`, false);
  }
}

async function del(keyB64) {
  if (!keyB64) return;
  const key = show(b64ToBytes(keyB64));
  try {
    const resp = await call("KV/Delete", { key: keyB64 });
    say(`deleted ${key} at revision ${resp.revision}`, true);
    $("#value").hidden = true;
    shown = null;
  } catch (e) {
    say(`delete ${key}: ${e.message}`, false);
  }
}

// isText: valid UTF-8 without control characters other than tab and newlines.
export function isText(bytes) {
  let s;
  try {
    s = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return false;
  }
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s);
}

export function hex(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = [...bytes.slice(i, i + 16)].map((b) => b.toString(16).padStart(2, "0"));
    lines.push(`${i.toString(16).padStart(8, "0")}  ${row.join(" ")}`);
  }
  return lines.join("\n");
}

// show renders a key: text when it is text, else hex digits.
export function show(bytes) {
  return isText(bytes) ? new TextDecoder().decode(bytes) : `0x${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
