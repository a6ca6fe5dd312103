// Talking to the bilrp server: JSON requests whose failures become one-line Error messages.
"use strict";

/** The one-line message of a failed answer: its {"error"} field, else the HTTP status. */
async function failure(response) {
  let message = `${response.status} ${response.statusText || "error"}`.trim();
  try {
    const body = await response.json();
    if (body && typeof body.error === "string" && body.error) message = body.error;
    else if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  return new Error(message);
}

async function send(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new Error("the bilrp server does not answer: is `bilrp serve` still running?");
  }
  if (!response.ok) throw await failure(response);
  return response;
}

async function parsed(response, path) {
  try {
    return await response.json();
  } catch {
    throw new Error(`the server's answer to ${path} is not JSON`);
  }
}

/** GET `path` (body undefined) or POST `body` as JSON; the parsed JSON answer. */
export async function getJSON(path, body) {
  return parsed(await send(path, body), path);
}

/** The notes (one-line messages, e.g. a truncation) of an answer's X-Bilrp-Notes header: a JSON list. */
export function headerNotes(response) {
  const header = response.headers.get("X-Bilrp-Notes");
  if (!header) return [];
  try {
    const notes = JSON.parse(header);
    return Array.isArray(notes) ? notes.map(String) : [];
  } catch {
    return [`the server's notes could not be read: ${header}`];
  }
}

/** POST `body` to `path`: `{data, notes}`, the parsed JSON answer and the notes of its X-Bilrp-Notes header. */
export async function getAnswer(path, body) {
  const response = await send(path, body);
  return { data: await parsed(response, path), notes: headerNotes(response) };
}

/** POST `body` to `path` and save the answer as a file (name from Content-Disposition, else `fallback`). */
export async function download(path, body, fallback) {
  const response = await send(path, body);
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  saveBlob(blob, match ? decodeURIComponent(match[1]) : fallback);
}

/** Offer `blob` as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
