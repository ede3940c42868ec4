import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * Mail addresses as mailgrid keys them: the local part kept as given (RFC 5321 says it may
 * be case-sensitive, but every hosted account is stored lower-case, so lookups fold it),
 * the domain lower-cased and without a trailing dot.
 */
export interface Address {
  local: string;
  domain: string;
  /** `local@domain`, folded to lower case: the key of an account. */
  key: string;
}

// Dot-atom or quoted local part; domain of LDH labels (or U-labels with SMTPUTF8).
const LOCAL_RE = /^(?:[^\s"(),:;<>@[\\\]\x00-\x1f\x7f]+|"(?:[^"\\\r\n]|\\.)+")$/u;
const LABEL_RE = /^(?!-)[\p{L}\p{N}-]{1,63}(?<!-)$/u;

export function parseAddress(input: string): Address | undefined {
  const text = input.trim();
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1 || text.length > 254) return undefined;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1).replace(/\.$/, '').toLowerCase();
  if (local.length > 64 || !LOCAL_RE.test(local)) return undefined;
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return undefined;
  if (!isDomain(domain)) return undefined;
  return { local, domain, key: `${local.toLowerCase()}@${domain}` };
}

export function isDomain(domain: string): boolean {
  const labels = domain.split('.');
  return domain.length <= 253 && labels.length >= 1 && labels.every((l) => LABEL_RE.test(l));
}

export function normalizeDomain(domain: string): string {
  return domain.trim().replace(/\.$/, '').toLowerCase();
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
