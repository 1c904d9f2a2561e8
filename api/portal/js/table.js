// The result table: sortable by any column (click its header), paged, with each column's
// unit, UCD and description in its header.

const PAGE = 100;

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // NULLs last
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(10)));
  return String(value);
}

export class ResultTable {
  constructor(root) {
    this.root = root;
    this.result = null;
    this.order = null; // row indexes in display order
    this.sortColumn = -1;
    this.descending = false;
    this.page = 0;
    this.onRowHover = null;
    // (column) => {text, title, run(value)} or null: a button in that column's cells
    this.cellAction = null;
  }

  show(result) {
    this.result = result;
    this.order = result.rows.map((_, i) => i);
    this.sortColumn = -1;
    this.page = 0;
    this.render();
  }

  sortBy(column) {
    this.descending = this.sortColumn === column ? !this.descending : false;
    this.sortColumn = column;
    const rows = this.result.rows;
    const sign = this.descending ? -1 : 1;
    this.order.sort((i, j) => sign * compare(rows[i][column], rows[j][column]) || i - j);
    this.page = 0;
    this.render();
  }

  /** Show the page holding a row (by its index in the result) and highlight it. */
  reveal(rowIndex) {
    const position = this.order.indexOf(rowIndex);
    if (position < 0) return;
    this.page = Math.floor(position / PAGE);
    this.render();
    const tr = this.root.querySelector(`tr[data-row="${rowIndex}"]`);
    if (tr) { tr.classList.add("picked"); tr.scrollIntoView({ block: "nearest" }); }
  }

  render() {
    const { columns, rows } = this.result;
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    const start = this.page * PAGE;
    const table = document.createElement("table");
    table.className = "results";
    const head = table.createTHead().insertRow();
    columns.forEach((c, i) => {
      const th = document.createElement("th");
      th.dataset.column = c.name;
      const arrow = i === this.sortColumn ? (this.descending ? " ▼" : " ▲") : "";
      th.innerHTML = `<span class="name"></span><span class="unit"></span><span class="ucd"></span>`;
      th.querySelector(".name").textContent = c.name + arrow;
      th.querySelector(".unit").textContent = c.unit ? `[${c.unit}]` : "";
      th.querySelector(".ucd").textContent = c.ucd || "";
      th.title = [c.description, c.ucd && `UCD: ${c.ucd}`, c.unit && `unit: ${c.unit}`,
        c.datatype && `type: ${c.datatype}`].filter(Boolean).join("\n");
      th.addEventListener("click", () => this.sortBy(i));
      head.appendChild(th);
    });
    const body = table.createTBody();
    const actions = columns.map((c) => (this.cellAction ? this.cellAction(c) : null));
    for (const index of this.order.slice(start, start + PAGE)) {
      const tr = body.insertRow();
      tr.dataset.row = index;
      rows[index].forEach((value, k) => {
        const td = tr.insertCell();
        td.textContent = cell(value);
        const action = actions[k];
        if (action && value !== null && value !== undefined) {
          const button = document.createElement("button");
          button.className = "cell-action";
          button.dataset.text = action.text; // drawn by CSS: the cell's text stays the value
          button.title = action.title;
          button.setAttribute("aria-label", action.title);
          button.addEventListener("click", () => action.run(value));
          td.append(" ", button);
        }
      });
    }
    const pager = document.createElement("div");
    pager.className = "pager";
    const end = Math.min(start + PAGE, rows.length);
    pager.innerHTML = `<button data-go="-1">◀ previous</button>
      <span class="range"></span><button data-go="1">next ▶</button>`;
    pager.querySelector(".range").textContent = rows.length
      ? `rows ${start + 1}–${end} of ${rows.length} (page ${this.page + 1} of ${pages})`
      : "no rows";
    for (const button of pager.querySelectorAll("button")) {
      const next = this.page + Number(button.dataset.go);
      button.disabled = next < 0 || next >= pages;
      button.addEventListener("click", () => { this.page = next; this.render(); });
    }
    const scroller = document.createElement("div");
    scroller.className = "table-scroll";
    scroller.appendChild(table);
    this.root.replaceChildren(pager, scroller);
  }
}
