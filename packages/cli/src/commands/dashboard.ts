import { spawn, spawnSync } from 'node:child_process';
import { config, json, program } from '../context.js';
import { CliError } from '../errors.js';
import { alive, readState } from '../local-cluster/launcher.js';

/**
 * `mailgrid dashboard`: the URL of a node's dashboard (every node serves it on its HTTP
 * port), checked to answer, printed, and opened in a browser when there is a display. The
 * admin token goes in the URL's fragment, which the browser keeps to itself.
 */
program
  .command('dashboard')
  .description("print the URL of a node's dashboard and open it in a browser when there is a display")
  .option('--url <url>', "a node's HTTP address (host:port) or dashboard URL; default: the first running frontend of the local cluster in this folder, else this node's http.host:http.port")
  .option('--token <token>', "the admin token, for changing settings from the page (default: MAILGRID_HTTP_ADMIN_TOKEN, or the local cluster's)")
  .option('--no-open', 'only print the URL')
  .action(async (opts: { url?: string; token?: string; open: boolean }) => {
    const { url, token: localToken, where } = locate(opts.url);
    await answers(url, where);
    const token = opts.token || config().http.adminToken || localToken;
    const full = token ? `${url.href}#token=${encodeURIComponent(token)}` : url.href;
    const opened = opts.open && openInBrowser(full);
    if (json()) process.stdout.write(JSON.stringify({ url: full, opened }) + '\n');
    else process.stdout.write(`${full}\n${opened ? '(opened in your browser)\n' : ''}`);
  });

/** Which node's dashboard, and the local cluster's admin token when it is that cluster's. */
function locate(given: string | undefined): { url: URL; token?: string; where: string } {
  if (given) return { url: dashboardUrl(given), where: given };
  const state = readState();
  if (state) {
    const running = state.processes.filter((p) => (p.role === 'frontend' || p.role === 'backend') && p.ports.http && alive(p.pid));
    const node = running.find((p) => p.role === 'frontend') ?? running[0];
    if (!node) throw new CliError('no member of the local cluster in this folder is running (see: mailgrid cluster status)');
    return { url: dashboardUrl(`127.0.0.1:${node.ports.http}`), token: state.adminToken, where: `${node.id} of the local cluster` };
  }
  const { host, port } = config().http;
  if (port === 0) throw new CliError('this node serves no HTTP (http.port is 0); give --url <host:port> of a node that does');
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return { url: dashboardUrl(`${h}:${port}`), where: 'the node of this configuration' };
}

/** `host:port`, `http://host:port` or a full URL; a bare address gets /dashboard. */
function dashboardUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`not a URL or host:port: ${raw}`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/dashboard';
  url.hash = '';
  return url;
}

async function answers(url: URL, where: string): Promise<void> {
  const api = new URL('/api/cluster', url);
  let res: Response;
  try {
    res = await fetch(api, { signal: AbortSignal.timeout(3_000) });
  } catch (err) {
    const why = (err as Error).name === 'TimeoutError' ? 'no answer within 3 s' : ((err as { cause?: Error }).cause?.message ?? (err as Error).message);
    throw new CliError(`no node answers at ${url.origin} (${where}): ${why}. Is it running? (start one with: mailgrid start, or mailgrid cluster up)`);
  }
  await res.body?.cancel();
  if (!res.ok) throw new CliError(`${url.origin} (${where}) answers ${res.status} for ${api.pathname}: not a mailgrid node with a dashboard?`);
}

/** xdg-open, only where there is a display to open a browser on. */
function openInBrowser(url: string): boolean {
  if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return false;
  if (spawnSync('sh', ['-c', 'command -v xdg-open'], { stdio: 'ignore' }).status !== 0) return false;
  const child = spawn('xdg-open', [url], { detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
  return true;
}
