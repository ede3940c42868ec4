import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LIVE_SETTINGS, send, type HttpRoute, type Logger } from '@mailgrid/core';
import type { ClusterSnapshot, ClusterView } from './snapshot.js';

export interface DashboardOptions {
  /** The cluster as this node sees it now. */
  snapshot: () => Promise<ClusterView> | ClusterView;
  /** The admin token (`http.adminToken`, read at each request: a live setting may change it); empty: read-only for everyone. */
  adminToken: () => string;
  /**
   * Sets one live setting of a node (`_cluster` for every node) from its text, as
   * `mailgrid node set` does; absent where the node cannot (a single node has no settings in
   * etcd). A value refused for what it is (not live, not valid, no such member) throws an
   * error whose `code` is `SETTING_REFUSED`; anything else is a fault.
   */
  setSetting?: (node: string, key: string, value: string) => Promise<unknown>;
  log: Logger;
}

/** The page, shipped next to dist/ in the package (found from dist/routes.js at run time). */
export const PAGE_FILE = new URL('../assets/dashboard.html', import.meta.url);

const MAX_BODY = 16 * 1024;

/**
 * The dashboard's routes on a node's HTTP port: `GET /dashboard` (one self-contained page,
 * no outside resource), `GET /api/cluster` (the snapshot), `GET /api/session` (whether a
 * bearer token is the admin token) and `POST /api/settings` (admin only). Reading is open to
 * whoever reaches the port; writing needs `Authorization: Bearer <http.adminToken>`: 403 while
 * no token is configured, 401 without the token or with a wrong one, 501 where the node
 * cannot set settings.
 */
export function dashboardRoutes(options: DashboardOptions): Record<string, HttpRoute> {
  const page = readFileSync(PAGE_FILE);
  const log = options.log;

  const snapshot = async (): Promise<ClusterSnapshot> => ({
    ...(await options.snapshot()),
    admin: options.adminToken() !== '',
    settable: options.setSetting ? [...LIVE_SETTINGS] : [],
  });

  /** Answers a refusal and returns false, or true for the admin. */
  const admitted = (req: IncomingMessage, res: ServerResponse): boolean => {
    const outcome = authorize(req.headers.authorization, options.adminToken());
    if (outcome === 'admin') return true;
    if (outcome === 'no-token') send(res, 403, { error: 'no admin token is configured on this node (http.adminToken): the dashboard is read-only' });
    else {
      log.warn({ event: 'dashboard.unauthorized', from: req.socket.remoteAddress, path: req.url }, 'dashboard write refused: no or wrong admin token');
      res.setHeader('www-authenticate', 'Bearer realm="mailgrid"');
      send(res, 401, { error: 'an admin token is needed (Authorization: Bearer <token>)' });
    }
    return false;
  };

  return {
    '/': (req, res) => {
      res.writeHead(302, { location: '/dashboard' });
      res.end();
    },
    '/dashboard': (req, res) => {
      if (!allow(req, res, 'GET')) return;
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        // Everything is inline; the page talks to its own node only.
        'content-security-policy':
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : page);
    },
    '/api/cluster': (req, res) => {
      if (!allow(req, res, 'GET')) return;
      res.setHeader('cache-control', 'no-store');
      Promise.resolve()
        .then(snapshot)
        .then(
          (s) => send(res, 200, s),
          (err: Error) => {
            log.error({ event: 'dashboard.snapshot-failed', err }, 'dashboard snapshot failed');
            send(res, 500, { error: err.message });
          },
        );
    },
    '/api/session': (req, res) => {
      if (!allow(req, res, 'GET')) return;
      res.setHeader('cache-control', 'no-store');
      if (admitted(req, res)) send(res, 200, { admin: true, settable: options.setSetting ? [...LIVE_SETTINGS] : [] });
    },
    '/api/settings': (req, res) => {
      if (!allow(req, res, 'POST')) return;
      if (!admitted(req, res)) {
        req.resume();
        return;
      }
      const set = options.setSetting;
      if (!set) {
        req.resume();
        return send(res, 501, { error: 'this node has no live settings to set (a single node is configured by its file, environment and flags)' });
      }
      readJson(req)
        .then(async (body) => {
          const { node, key, value } = (body ?? {}) as Record<string, unknown>;
          if (typeof node !== 'string' || !node || typeof key !== 'string' || !key || !['string', 'number', 'boolean'].includes(typeof value))
            return send(res, 400, { error: 'expected {"node": "<member or _cluster>", "key": "<setting>", "value": "<value>"}' });
          try {
            const applied = await set(node, key, String(value));
            log.info({ event: 'dashboard.setting', node, key, value: applied, from: req.socket.remoteAddress }, 'setting changed from the dashboard');
            send(res, 200, { node, key, value: applied });
          } catch (err) {
            if ((err as { code?: unknown }).code === 'SETTING_REFUSED') return send(res, 400, { error: (err as Error).message });
            log.error({ event: 'dashboard.setting-failed', node, key, err }, 'setting not written');
            send(res, 503, { error: `not written: ${(err as Error).message}` });
          }
        })
        .catch((err: Error & { status?: number }) => send(res, err.status ?? 400, { error: err.message }));
    },
  };
}

/**
 * Whether an Authorization header carries the admin token. Both sides are hashed first, so
 * the comparison takes the same time whatever the token's length and wherever it differs.
 */
export function authorize(header: string | undefined, token: string): 'admin' | 'no-token' | 'unauthorized' {
  if (!token) return 'no-token';
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  if (!m) return 'unauthorized';
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(m[1]), digest(token)) ? 'admin' : 'unauthorized';
}

function allow(req: IncomingMessage, res: ServerResponse, method: 'GET' | 'POST'): boolean {
  if (req.method === method || (method === 'GET' && req.method === 'HEAD')) return true;
  req.resume();
  res.setHeader('allow', method === 'GET' ? 'GET, HEAD' : method);
  send(res, 405, { error: `${req.method} not allowed here` });
  return false;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'));
      } catch {
        reject(new Error('the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}
