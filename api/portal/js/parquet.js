// The column names of a Parquet file, read from its footer in the browser (so the
// cross-match form can offer and guess the RA/Dec columns of a Parquet target list as it
// does for CSV and VOTable). The footer is a Thrift compact-protocol FileMetaData; only
// its schema (field 2: a list of SchemaElement, each with its name in field 4 and its
// number of children in field 5) is read, every other field skipped.

class Reader {
  constructor(bytes) { this.bytes = bytes; this.at = 0; }

  byte() {
    if (this.at >= this.bytes.length) throw new Error("the Parquet footer ends early");
    return this.bytes[this.at++];
  }

  varint() { // unsigned LEB128, as a Number (enough for lengths and small ints)
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return value;
    }
  }

  zigzag() { const v = this.varint(); return v % 2 ? -(v + 1) / 2 : v / 2; }

  binary() {
    const length = this.varint();
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  /** Read a struct's fields, calling ``field(id, type)`` for each; it returns true when
   *  it has read the value itself, else the value is skipped. */
  struct(field) {
    let id = 0;
    for (;;) {
      const header = this.byte();
      const type = header & 0x0f;
      if (type === 0) return;
      id = header >> 4 ? id + (header >> 4) : this.zigzag();
      if (!field(id, type)) this.skip(type);
    }
  }

  list() { // [size, element type]
    const header = this.byte();
    const size = header >> 4 === 15 ? this.varint() : header >> 4;
    return [size, header & 0x0f];
  }

  skip(type) {
    switch (type) {
      case 1: case 2: return; // a boolean field: its value is in the type
      case 3: this.at += 1; return;
      case 4: case 5: case 6: this.varint(); return;
      case 7: this.at += 8; return;
      case 8: this.binary(); return;
      case 9: case 10: {
        const [size, element] = this.list();
        for (let i = 0; i < size; i++) {
          if (element === 1 || element === 2) this.at += 1; else this.skip(element);
        }
        return;
      }
      case 11: {
        const size = this.varint();
        if (!size) return;
        const kinds = this.byte();
        for (let i = 0; i < size; i++) { this.skip(kinds >> 4); this.skip(kinds & 0x0f); }
        return;
      }
      case 12: this.struct(() => false); return;
      default: throw new Error(`not a Parquet footer (Thrift type ${type})`);
    }
  }
}

/** The top-level column names of a Parquet file (a File or Blob). */
export async function parquetColumns(file) {
  const tail = new Uint8Array(await file.slice(-8).arrayBuffer());
  const magic = String.fromCharCode(...tail.subarray(4));
  if (magic !== "PAR1") throw new Error("not a Parquet file (no PAR1 at its end)");
  const length = new DataView(tail.buffer).getUint32(0, true);
  if (length + 12 > file.size) throw new Error("the Parquet footer's length is wrong");
  const footer = new Uint8Array(await file.slice(file.size - 8 - length, file.size - 8).arrayBuffer());
  const reader = new Reader(footer);
  const elements = []; // [{name, children}] in depth-first order, the root first
  reader.struct((id, type) => {
    if (id !== 2 || type !== 9) return false;
    const [size] = reader.list();
    for (let i = 0; i < size; i++) {
      const element = { name: "", children: 0 };
      reader.struct((fid, ftype) => {
        if (fid === 4 && ftype === 8) { element.name = new TextDecoder().decode(reader.binary()); return true; }
        if (fid === 5 && ftype === 5) { element.children = reader.zigzag(); return true; }
        return false;
      });
      elements.push(element);
    }
    return true;
  });
  // the root's children, each followed by its own subtree
  const names = [];
  let at = 1;
  const subtree = () => { const e = elements[at++]; for (let k = 0; k < e.children; k++) subtree(); };
  for (let k = 0; k < (elements[0]?.children ?? 0) && at < elements.length; k++) {
    names.push(elements[at].name);
    subtree();
  }
  return names;
}
