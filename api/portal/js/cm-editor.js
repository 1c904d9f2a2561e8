// The full query editor: CodeMirror 6 (vendored) with SQL highlighting, completion of the
// catalogs, tables and columns of TAP_SCHEMA, and errors marked at their line and column.
// editor.js loads it once the page is up.

import {
  EditorState, Compartment, EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection,
  defaultKeymap, history, historyKeymap, indentWithTab, syntaxHighlighting,
  defaultHighlightStyle, bracketMatching, autocompletion, completionKeymap, closeBrackets,
  closeBracketsKeymap, searchKeymap, highlightSelectionMatches, lintGutter, setDiagnostics,
  sql, PostgreSQL, MySQL, SQLDialect,
} from "../vendor/codemirror.js";

/** ADQL: standard SQL words plus its geometry functions and TOP. */
const ADQL = SQLDialect.define({
  keywords: "select from where and or not in is null like ilike between group by having order " +
    "asc desc top offset limit join inner left right full outer natural using on as distinct " +
    "all union intersect except case when then else end exists with",
  builtin: "contains intersects point circle box polygon distance area coord1 coord2 " +
    "coordsys centroid region abs ceiling degrees exp floor log log10 mod pi power radians " +
    "sqrt rand round truncate sin cos tan asin acos atan atan2 count sum avg min max lower " +
    "upper trim coalesce in_unit",
  types: "smallint integer bigint real double precision char varchar timestamp boolean",
});

const DIALECTS = { ADQL, PostgreSQL, Qserv: MySQL };

/** Make the editor in ``parent``; ``onRun`` is called on Ctrl/Cmd-Enter. */
export function makeCodeMirror(parent, { doc = "", onRun }) {
  const language = new Compartment();
  let schema = {};
  let dialect = "ADQL";
  const languageOf = () => sql({ dialect: DIALECTS[dialect], schema, upperCaseKeywords: true });
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(), history(), drawSelection(), highlightActiveLine(), bracketMatching(),
        closeBrackets(), highlightSelectionMatches(), lintGutter(),
        autocompletion({ activateOnTyping: true }),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        language.of(languageOf()),
        keymap.of([
          { key: "Mod-Enter", run: () => { onRun(); return true; } },
          indentWithTab, ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap,
          ...searchKeymap, ...completionKeymap,
        ]),
      ],
    }),
  });
  const reconfigure = () => view.dispatch({ effects: language.reconfigure(languageOf()) });
  return {
    view,
    get text() { return view.state.doc.toString(); },
    set text(value) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
    },
    /** Completion from TAP_SCHEMA columns: {"cat.Table": [{name, ...}]}. */
    setSchema(tables) {
      schema = {};
      for (const [table, columns] of Object.entries(tables)) {
        schema[table] = columns.map((c) => ({
          label: c.name, type: "property",
          detail: [c.unit && `[${c.unit}]`, c.ucd].filter(Boolean).join(" "),
          info: c.description || undefined,
        }));
      }
      reconfigure();
    },
    setDialect(name) { dialect = DIALECTS[name] ? name : "ADQL"; reconfigure(); },
    /** Mark an error at a line and column (1-based), or clear the marks. */
    showError(message, line, column) {
      if (line == null) { view.dispatch(setDiagnostics(view.state, [])); return; }
      const doc = view.state.doc;
      const at = doc.line(Math.min(Math.max(line, 1), doc.lines));
      const from = Math.min(at.from + Math.max(column - 1, 0), at.to);
      const to = Math.min(at.to, Math.max(from + 1, wordEnd(at.text, from - at.from) + at.from));
      view.dispatch(setDiagnostics(view.state, [{ from, to, severity: "error", message }]));
      view.dispatch({ selection: { anchor: from }, scrollIntoView: true });
    },
  };
}

function wordEnd(text, start) {
  const match = /^[\w.]+/.exec(text.slice(start));
  return start + (match ? match[0].length : 1);
}
