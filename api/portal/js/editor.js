// The query editor as the page uses it: a plain textarea at once, replaced by the
// CodeMirror editor (cm-editor.js: highlighting, completion, error marks) as soon as its
// library is loaded, so that the page is usable before the 430 kB bundle has run.

/** The editor in ``parent``; ``onRun`` is called on Ctrl/Cmd-Enter. ``ready`` resolves
 *  when CodeMirror has taken over (or has failed to load: the textarea stays). */
export function makeEditor(parent, { onRun }) {
  const area = document.createElement("textarea");
  area.className = "plain-editor";
  area.spellcheck = false;
  area.setAttribute("aria-label", "query");
  area.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      onRun();
    }
  });
  parent.append(area);
  let full = null;
  let schema = null;
  let dialect = "ADQL";
  const editor = {
    get text() { return full ? full.text : area.value; },
    set text(value) { if (full) full.text = value; else area.value = value; },
    get view() { return full?.view; },
    setSchema(tables) { schema = tables; full?.setSchema(tables); },
    setDialect(name) { dialect = name; full?.setDialect(name); },
    /** Mark an error at a line and column (1-based), or clear the marks. */
    showError(message, line, column) {
      if (full) { full.showError(message, line, column); return; }
      if (line == null) return;
      const lines = area.value.split("\n");
      let at = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
      area.focus();
      area.setSelectionRange(at + column - 1, at + column);
    },
  };
  editor.ready = import("./cm-editor.js").then(({ makeCodeMirror }) => {
    const focused = document.activeElement === area;
    full = makeCodeMirror(parent, { doc: area.value, onRun });
    area.remove();
    full.setDialect(dialect);
    if (schema) full.setSchema(schema);
    if (focused) full.view.focus();
  }).catch((error) => console.error("the editor could not load; a plain one stays", error));
  return editor;
}
