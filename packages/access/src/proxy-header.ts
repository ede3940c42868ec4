import { isIP, type Socket } from 'node:net';

/** RFC: a v1 header is at most 107 bytes with its CRLF. */
const MAX_HEADER = 107;

export interface ProxiedPeer {
  address: string;
  port: number;
}

/**
 * The PROXY protocol v1 header a balancer sends first (HAProxy's `send-proxy`): the client's
 * real address and port. `PROXY UNKNOWN` (a health check) keeps the balancer's own. Anything
 * else, an address that is not one, or a line longer than the protocol allows, rejects; what
 * came after the header stays in the socket for the session. The socket is left paused.
 */
export function readProxyHeader(socket: Socket): Promise<ProxiedPeer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: Error, peer?: ProxiedPeer, rest?: Buffer) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      // Put back only once nothing listens: it waits for the session's reader.
      if (rest?.length) socket.unshift(rest);
      if (err) reject(err);
      else resolve(peer!);
    };
    const onClose = () => done(new Error('closed before its PROXY header'));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n');
      if (end < 0) return buf.length > MAX_HEADER ? done(new Error('PROXY header too long')) : undefined;
      const m = /^PROXY (?:UNKNOWN(?: .*)?|(TCP4|TCP6) (\S+) (\S+) (\d+) (\d+))$/.exec(buf.subarray(0, end).toString('latin1'));
      if (!m) return done(new Error('bad PROXY header'));
      const rest = buf.subarray(end + 2);
      if (!m[1]) return done(undefined, { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, rest);
      if (isIP(m[2]) !== (m[1] === 'TCP4' ? 4 : 6)) return done(new Error('bad address in the PROXY header'));
      done(undefined, { address: m[2], port: Number(m[4]) }, rest);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    // Accepted paused (pauseOnConnect): reading starts here.
    socket.resume();
  });
}
