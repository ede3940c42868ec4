import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

/**
 * Mail addresses as mailgrid keys them: the local part kept as given (RFC 5321 says it may
 * be case-sensitive, but every hosted account is stored lower-case, so lookups fold it), the
 * domain in its one canonical form (lower-case A-labels, no trailing dot), so `bücher.test`,
 * `XN--BCHER-KVA.test.` and `xn--bcher-kva.test` are one domain everywhere.
 */
export interface Address {
  local: string;
  /** Canonical: lower-case A-labels. */
  domain: string;
  /** `local@domain`, the local part folded to lower case: the key of an account. */
  key: string;
}

// Dot-atom or quoted local part (UTF-8 allowed, for SMTPUTF8); domains are LDH labels.
const LOCAL_RE = /^(?:[^\s"(),:;<>@[\\\]\x00-\x1f\x7f]+|"(?:[^"\\\r\n]|\\.)+")$/u;
const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export function parseAddress(input: string): Address | undefined {
  const text = input.trim();
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1 || text.length > 254) return undefined;
  const local = unquoted(text.slice(0, at));
  const domain = normalizeDomain(text.slice(at + 1));
  if (local.length > 64 || !LOCAL_RE.test(local)) return undefined;
  if (!local.startsWith('"') && (local.startsWith('.') || local.endsWith('.') || local.includes('..'))) return undefined;
  if (!isDomain(domain)) return undefined;
  return { local, domain, key: `${local.toLowerCase()}@${domain}` };
}

/**
 * A quoted local part that says the same as a plain one is that one (RFC 5321 §4.1.2:
 * `"alice"` and `alice` are one mailbox); one that needs its quotes keeps them.
 */
function unquoted(local: string): string {
  if (!(local.length > 1 && local.startsWith('"') && local.endsWith('"'))) return local;
  const plain = local.slice(1, -1).replace(/\\(.)/g, '$1');
  return /^[^\s"(),:;<>@[\\\]\x00-\x1f\x7f]+$/u.test(plain) && !plain.startsWith('.') && !plain.endsWith('.') && !plain.includes('..') ? plain : local;
}

/** A canonical domain name (see `normalizeDomain`) of LDH labels. */
export function isDomain(domain: string): boolean {
  return domain.length > 0 && domain.length <= 253 && domain.split('.').every((l) => LABEL_RE.test(l));
}

/** A domain in mailgrid's one form: lower-case A-labels without the trailing dot ('' when U-labels do not convert). */
export function normalizeDomain(domain: string): string {
  const d = domain.trim().replace(/\.$/, '');
  return isAscii(d) ? d.toLowerCase() : domainToASCII(d);
}

export function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

/**
 * A list of networks from `10.0.0.0/8, 192.0.2.7, 2001:db8::/32` (trusted networks, the
 * balancers allowed to send PROXY headers). Throws a readable error for a bad entry.
 */
export function parseNetworks(spec: string): BlockList {
  const list = new BlockList();
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [net, bits, extra] = item.split('/');
    const type = isIPv6(net) ? 'ipv6' : isIPv4(net) ? 'ipv4' : undefined;
    const max = type === 'ipv6' ? 128 : 32;
    if (!type || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max)))
      throw new Error(`not an address or CIDR block: ${item}`);
    if (bits === undefined) list.addAddress(net, type);
    else list.addSubnet(net, Number(bits), type);
  }
  return list;
}

/** Whether a peer address (IPv4, IPv6, or IPv4 mapped into IPv6) is in a network list. */
export function inNetworks(list: BlockList, ip: string): boolean {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  return v4 ? list.check(v4, 'ipv4') : list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
}
