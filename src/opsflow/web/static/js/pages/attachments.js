// A task's attachments: the list (downloads go through the API with the session's token)
// and, for the roles that may add files, an upload through the resumable upload API
// (POST /uploads, PUT each chunk, POST complete) with a progress bar. A chunk that fails on
// the network is sent again (up to three times): the server takes a chunk sent twice.
import { download, putChunk, request } from "../api.js";
import { h, timeEl } from "../dom.js";
import { can } from "../state.js";

const MIB = 1024 * 1024;

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function uploadFile(taskId, file, onProgress) {
  const sha256 = hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
  // At least 5 MiB a chunk (the API's minimum), at most 64 MiB, about a thousand chunks.
  const chunkSize = Math.min(64 * MIB, Math.max(5 * MIB, Math.ceil(file.size / 1000 / MIB) * MIB));
  const upload = await request("POST", "/uploads", {
    body: { task_id: taskId, filename: file.name, size: file.size, sha256, chunk_size: chunkSize },
  });
  let done = 0;
  for (let n = 0; n < upload.total_chunks; n += 1) {
    const blob = file.slice(n * chunkSize, Math.min(file.size, (n + 1) * chunkSize));
    for (let attempt = 1; ; attempt += 1) {
      try {
        await putChunk(`/uploads/${upload.upload_id}/chunks/${n}`, blob, (sent) => onProgress(done + sent, file.size));
        break;
      } catch (error) {
        if (error.status !== 0 || attempt >= 3) throw error;
      }
    }
    done += blob.size;
    onProgress(done, file.size);
  }
  return request("POST", `/uploads/${upload.upload_id}/complete`);
}

// `kept` holds what must outlive a re-render of the task page (a live event reloads it):
// the upload form, whose progress bar an upload in flight keeps updating, and its error.
export function attachmentsSection(task, attachments, reload, kept = {}) {
  kept.attachmentError ??= h("p", { class: "error", role: "alert" });
  const error = kept.attachmentError;
  const items = attachments.map((a) =>
    h(
      "li",
      { class: "attachment" },
      h("button", { type: "button", class: "link", onclick: () => download(`/attachments/${a.id}`, a.filename).catch((e) => { error.textContent = e.message; }) }, a.filename),
      h("span", { class: "muted" }, ` ${size(a.size)} · ${a.content_type} · `),
      timeEl(a.created_at),
    ),
  );
  const form = can("comment") ? (kept.uploadForm ??= uploadForm(task, reload, error)) : null;
  return h(
    "section",
    { "aria-labelledby": "h-attachments" },
    h("h2", { id: "h-attachments" }, `Attachments (${attachments.length})`),
    items.length ? h("ul", { class: "plain", id: "attachment-list" }, items) : h("p", { class: "muted" }, "No attachments."),
    form,
    error,
  );
}

function uploadForm(task, reload, error) {
  const input = h("input", { id: "attach-file", type: "file", name: "file", required: true });
  const bar = h("progress", { id: "upload-progress", max: 100, value: 0, "aria-label": "Upload progress" });
  const text = h("span", { id: "upload-percent", "aria-live": "polite" }, "");
  const button = h("button", { type: "submit" }, "Upload");
  const form = h(
    "form",
    {
      class: "upload",
      onsubmit: async (event) => {
        event.preventDefault();
        const file = input.files[0];
        if (!file) return;
        error.textContent = "";
        button.disabled = true;
        const show = (sent, total) => {
          const percent = total ? Math.floor((100 * sent) / total) : 100;
          bar.value = percent;
          text.textContent = `${percent} %`;
        };
        show(0, file.size);
        try {
          await uploadFile(task.id, file, show);
          text.textContent = `100 % — ${file.name} attached`;
          await reload();
        } catch (err) {
          error.textContent = `Upload failed: ${err.message}`;
        } finally {
          button.disabled = false;
        }
      },
    },
    h("label", { for: "attach-file" }, "Attach a file"),
    input,
    button,
    bar,
    text,
  );
  return form;
}
