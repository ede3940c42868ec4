import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** `127.0.0.1:<port>`: connect here instead of the target. */
  address: string;
  port: number;
  /** Stops forwarding in both directions; connections stay open (a stalled network). */
  pause(): void;
  resume(): void;
  /** Resets every connection and every new one until restore() (a network cut). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A TCP proxy on loopback to `target` (`host:port`), to cut a node off from etcd or a peer. */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const colon = target.lastIndexOf(':');
  const [host, port] = [target.slice(0, colon), Number(target.slice(colon + 1))];
  const pairs = new Set<[Socket, Socket]>();
  let paused = false;
  let cutOff = false;

  const flow = ([a, b]: [Socket, Socket]) => {
    a.pipe(b);
    b.pipe(a);
  };
  const stall = ([a, b]: [Socket, Socket]) => {
    a.unpipe(b);
    b.unpipe(a);
    a.pause();
    b.pause();
  };
  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (cutOff) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(port, host);
    upstream.on('error', () => undefined);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    if (paused) stall(pair);
    else flow(pair);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const listenPort = (server.address() as { port: number }).port;

  const cutAll = () => {
    for (const [a, b] of pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    pairs.clear();
  };
  return {
    address: `127.0.0.1:${listenPort}`,
    port: listenPort,
    pause() {
      paused = true;
      pairs.forEach(stall);
    },
    resume() {
      paused = false;
      pairs.forEach(flow);
    },
    cut() {
      cutOff = true;
      cutAll();
    },
    restore() {
      cutOff = false;
    },
    close() {
      cutOff = true;
      cutAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
