import { createServer } from 'node:net';

/** RFC 5322 date-time in UTC: `Sat, 21 Nov 2026 14:05:09 +0000`. */
export function rfc5322Date(d: Date): string {
  const [wd, day, mon, year, time] = d.toUTCString().split(' ');
  return `${wd} ${day} ${mon} ${year} ${time} +0000`;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
