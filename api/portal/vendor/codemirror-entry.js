// The CodeMirror 6 pieces the portal's editor uses, bundled by build.sh into codemirror.js
// (one ES module, no runtime dependencies).
export { EditorState, Compartment } from "@codemirror/state";
export {
  EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection, placeholder,
} from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput,
} from "@codemirror/language";
export {
  autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap,
} from "@codemirror/autocomplete";
export { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
export { linter, lintGutter, setDiagnostics } from "@codemirror/lint";
export { sql, PostgreSQL, MySQL, StandardSQL, SQLDialect } from "@codemirror/lang-sql";
