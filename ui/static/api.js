// Calls to this node's Connect API in JSON (the Connect protocol's unary
// form: POST, application/json; 64-bit integers arrive as strings, bytes
// as base64). Errors are thrown as ApiError with the Connect code.

import { secret } from "./secret.js";

export class ApiError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.code = code;
  }
}

// call invokes /kvd.v1.<method> with body; guarded calls send the join
// secret in the header kvctl uses.
export async function call(method, body = {}, { guarded = false, timeoutMs = 3000 } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (guarded && secret()) {
    headers["Kvd-Join-Secret"] = secret();
  }
  let resp;
  try {
    resp = await fetch(`/kvd.v1.${method}`, {
      method: "POST", headers, body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs), credentials: "same-origin",
    });
  } catch (e) {
    throw new ApiError("unavailable", `this node does not answer (${e.message})`);
  }
  const text = await resp.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError("unknown", `HTTP ${resp.status}: ${text.slice(0, 200)}`);
  }
  if (!resp.ok) {
    throw new ApiError(data.code || `HTTP ${resp.status}`, data.message || "");
  }
  return data;
}

// bytesToB64 and b64ToBytes convert protobuf bytes fields.
export function bytesToB64(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

export function b64ToBytes(b64) {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export const textToB64 = (s) => bytesToB64(new TextEncoder().encode(s));
