import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser/index.js';

/**
 * A message as rules see it: its header fields (unfolded, RFC 2047 words decoded, as RFC
 * 5228 §5.7 compares them) read once from the head, and the addresses in them.
 */
export class MessageView {
  /** `value` decoded (what tests compare), `raw` as written (what addresses are parsed from). */
  private fields: { name: string; value: string; raw: string }[] | undefined;

  constructor(readonly body: Buffer) {}

  /** Every value of a header field, in order; case-insensitive name. */
  header(name: string): string[] {
    return this.named(name).map((f) => f.value);
  }

  has(name: string): boolean {
    return this.header(name).length > 0;
  }

  /**
   * The addresses in the named fields (groups flattened), parsed from the field as written:
   * an encoded word decodes to text only, so a display name cannot add an address.
   */
  addresses(name: string): string[] {
    const out: string[] = [];
    for (const f of this.named(name)) for (const a of addressparser(f.raw, { flatten: true })) if (a.address) out.push(a.address);
    return out;
  }

  private named(name: string): { name: string; value: string; raw: string }[] {
    const lower = name.toLowerCase();
    return this.all().filter((f) => f.name === lower);
  }

  private all(): { name: string; value: string; raw: string }[] {
    if (this.fields) return this.fields;
    let end = this.body.indexOf('\r\n\r\n');
    if (end < 0) end = this.body.length;
    const head = this.body.subarray(0, Math.min(end, 256 * 1024)).toString('utf8');
    const fields: { name: string; value: string; raw: string }[] = [];
    for (const line of head.split('\r\n')) {
      if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length) {
        fields[fields.length - 1].value += line;
        continue;
      }
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      fields.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1), raw: '' });
    }
    for (const f of fields) {
      f.raw = f.value.trim();
      try {
        f.value = libmime.decodeWords(f.value.trim());
      } catch {
        f.value = f.value.trim();
      }
    }
    return (this.fields = fields);
  }
}
