import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { metrics } from './metrics.js';
import type { Service, ServiceState } from './service.js';

/**
 * `/healthz` (the process answers), `/readyz` (every other service of the node is
 * running, so it should get traffic) and `/metrics` (Prometheus). On SIGTERM the first service to stop turns /readyz
 * to 503, which takes the node out of the balancer while it drains.
 */
export class HealthServer implements Service {
  readonly name = 'health';
  private _state: ServiceState = 'new';
  private server: Server | undefined;
  private _port = 0;

  constructor(
    private readonly options: { host: string; port: number; log: Logger; services: () => Service[] },
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  get port(): number {
    return this._port;
  }

  ready(): { ready: boolean; services: Record<string, ServiceState> } {
    const services = Object.fromEntries(this.options.services().filter((s) => s !== this).map((s) => [s.name, s.state]));
    return { ready: Object.values(services).every((s) => s === 'running'), services };
  }

  async start(): Promise<void> {
    this._state = 'running';
    if (this.options.port === 0) return;
    this.server = createServer((req, res) => {
      const path = req.url?.split('?')[0];
      if (path === '/healthz') return send(res, 200, { ok: true });
      if (path === '/metrics') {
        metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => send(res, 500, { error: err.message }),
        );
        return;
      }
      if (path === '/readyz') {
        const r = this.ready();
        return send(res, r.ready ? 200 : 503, r);
      }
      send(res, 404, { error: 'not found' });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.options.port, this.options.host, () => resolve());
    });
    this._port = (this.server.address() as { port: number }).port;
    this.options.log.info({ event: 'health.listening', port: this._port }, 'health endpoints listening');
  }

  async stop(): Promise<void> {
    this._state = 'stopped';
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }
}

function send(res: import('node:http').ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A node's services with its health endpoints in front (started first, stopped last). */
export function withHealth(http: { host: string; port: number }, log: Logger, services: Service[]): Service[] {
  const health = new HealthServer({ ...http, log, services: () => services });
  return [health, ...services];
}
