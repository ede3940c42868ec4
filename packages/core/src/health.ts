import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { metrics } from './metrics.js';
import type { Service, ServiceState } from './service.js';

/** A handler of one path on a node's HTTP port (the dashboard's page and API). */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpExtras {
  /** More paths served next to the health endpoints (exact match, without the query). */
  routes?: Record<string, HttpRoute>;
  /** Why the node should not get traffic although every service runs (a replica out of sync), or undefined. */
  notReady?: () => string | undefined;
  /** The Prometheus text of the whole node (a single node adds its backend thread's registry); default: this thread's registry. */
  metrics?: () => Promise<string>;
  /** Where the node's access listeners listen, by the registry's names: /readyz shows them. */
  listeners?: () => Record<string, string>;
}

/**
 * `/healthz` (the process answers), `/readyz` (every other service of the node is
 * running, so it should get traffic), `/metrics` (Prometheus) and the role's own routes.
 * On SIGTERM the first service to stop turns /readyz to 503, which takes the node out of
 * the balancer while it drains.
 */
export class HealthServer implements Service {
  readonly name = 'health';
  private _state: ServiceState = 'new';
  private server: Server | undefined;
  private _port = 0;

  constructor(
    private readonly options: { host: string; port: number; log: Logger; services: () => Service[] } & HttpExtras,
  ) {}

  get state(): ServiceState {
    return this._state;
  }

  get port(): number {
    return this._port;
  }

  ready(): { ready: boolean; services: Record<string, ServiceState>; listeners?: Record<string, string>; reason?: string } {
    const services = Object.fromEntries(this.options.services().filter((s) => s !== this).map((s) => [s.name, s.state]));
    const waiting = Object.entries(services).filter(([, s]) => s !== 'running').map(([name, s]) => `${name} ${s}`);
    const reason = waiting.length ? `not running: ${waiting.join(', ')}` : this.options.notReady?.();
    const listeners = this.options.listeners?.();
    return { ready: !reason, services, ...(listeners ? { listeners } : {}), ...(reason ? { reason } : {}) };
  }

  async start(): Promise<void> {
    this._state = 'running';
    if (this.options.port === 0) return;
    const text = this.options.metrics ?? (() => metrics.registry.metrics());
    this.server = createServer((req, res) => {
      const path = req.url?.split('?')[0] ?? '/';
      if (path === '/healthz') return send(res, 200, { ok: true });
      if (path === '/metrics') {
        text().then(
          (body) => {
            res.writeHead(200, { 'content-type': metrics.registry.contentType });
            res.end(body);
          },
          (err: Error) => send(res, 500, { error: err.message }),
        );
        return;
      }
      if (path === '/readyz') {
        const r = this.ready();
        return send(res, r.ready ? 200 : 503, r);
      }
      const route = this.options.routes?.[path];
      if (route) return route(req, res);
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

export function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A node's services with its HTTP endpoints in front (started first, stopped last). */
export function withHealth(http: { host: string; port: number }, log: Logger, services: Service[], extras: HttpExtras = {}): Service[] {
  const health = new HealthServer({ ...http, log, services: () => services, ...extras });
  return [health, ...services];
}
