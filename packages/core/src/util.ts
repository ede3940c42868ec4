import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** RFC 5322 date-time in UTC: `Sat, 21 Nov 2026 14:05:09 +0000`. */
export function rfc5322Date(d: Date): string {
  // Every message's Received: asks; the text only changes once a second.
  const second = Math.floor(d.getTime() / 1000);
  if (second !== lastDate.second) {
    const [wd, day, mon, year, time] = d.toUTCString().split(' ');
    lastDate = { second, text: `${wd} ${day} ${mon} ${year} ${time} +0000` };
  }
  return lastDate.text;
}
let lastDate = { second: NaN, text: '' };

/**
 * A TCP port free on 127.0.0.1 right now, chosen at random below the kernel's ephemeral
 * range (20000–32767 with Linux's default 32768–60999). Outgoing connections and other
 * programs' port-0 binds draw from that range, so on a busy machine a port from it can be
 * taken between this choice and the bind; one from below it is not. `avoid` holds ports
 * already chosen (by callers starting several processes side by side) and gets this one.
 */
export async function freePort(avoid: Set<number> = new Set()): Promise<number> {
  let low = 32768;
  try {
    low = Number(/^(\d+)/.exec(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'))?.[1] ?? low);
  } catch {
    // not Linux: its usual range
  }
  const [from, to] = [Math.max(1024, low - 12_768), low - 1];
  for (let i = 0; i < 500; i++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    if (!avoid.has(port) && (await canBind(port))) {
      avoid.add(port);
      return port;
    }
  }
  throw new Error(`no free port found between ${from} and ${to}`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
