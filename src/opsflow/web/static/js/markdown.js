// Safe Markdown: the text is HTML-escaped first, then a small subset is turned into
// fixed tags: fenced and inline code, **bold**, *emphasis*, [links](http(s)/mailto only),
// "- " lists, paragraphs and line breaks. Nothing of the input ever becomes a tag or an
// attribute other than an escaped, scheme-checked link target.
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function inline(escaped) {
  const codes = [];
  let out = escaped.replace(/`([^`\n]+)`/g, (_, code) => {
    codes.push(code);
    return `\u0000${codes.length - 1}\u0000`;
  });
  out = out
    .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]\n]+)\]\(((?:https?:\/\/|mailto:)[^\s)]+)\)/g, (_, text, href) =>
      `<a href="${href}" rel="noopener noreferrer nofollow" target="_blank">${text}</a>`);
  return out.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
}

export function renderMarkdown(source) {
  const text = escapeHtml(String(source).replace(/\r\n?/g, "\n"));
  const blocks = [];
  const parts = text.split(/^```[^\n]*\n([\s\S]*?)^```\s*$/m);
  parts.forEach((part, index) => {
    if (index % 2 === 1) {
      blocks.push(`<pre><code>${part}</code></pre>`);
      return;
    }
    for (const para of part.split(/\n{2,}/)) {
      const trimmed = para.trim();
      if (!trimmed) continue;
      const lines = trimmed.split("\n");
      if (lines.every((line) => /^\s*[-*] /.test(line))) {
        const items = lines.map((line) => `<li>${inline(line.replace(/^\s*[-*] /, ""))}</li>`);
        blocks.push(`<ul>${items.join("")}</ul>`);
      } else {
        blocks.push(`<p>${lines.map(inline).join("<br>")}</p>`);
      }
    }
  });
  return blocks.join("");
}

export function markdownEl(source) {
  const div = document.createElement("div");
  div.className = "md";
  div.innerHTML = renderMarkdown(source);
  return div;
}
