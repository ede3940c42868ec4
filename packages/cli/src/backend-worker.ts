import { Backend } from '@mailgrid/backend';
import { createLogger, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { routeGrpcLogs } from '@mailgrid/protocol';
import { LmdbMailStore } from '@mailgrid/store';
import { join, resolve } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/**
 * The single node's backend runs in a worker thread: its own event loop on the second
 * core, reached by the frontend over gRPC on loopback exactly as in a cluster. The SMTP
 * thread is the busy one; this keeps delivery, LMDB and the gRPC server off it.
 */
type ToWorker = { type: 'stop'; drainMs: number };
type FromWorker = { type: 'ready'; address: string } | { type: 'stopped' } | { type: 'failed'; message: string };

export class BackendWorker implements Service {
  readonly name = 'backend';
  private _state: ServiceState = 'new';
  private worker: Worker | undefined;
  private _address = '';

  constructor(private readonly config: Config, private readonly log: Logger) {}

  get state(): ServiceState {
    return this._state;
  }

  get address(): string {
    return this._address;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    // The backend thread has CPU to spare: a small young generation (V8's default is two
    // 16 MB semi-spaces) costs it a few more scavenges and saves ~20 MB of peak RSS.
    const worker = new Worker(new URL(import.meta.url), { workerData: this.config, resourceLimits: { maxYoungGenerationSizeMb: 6 } });
    this.worker = worker;
    const msg = await this.next(worker);
    if (msg.type !== 'ready') throw new Error(`backend failed to start: ${msg.type === 'failed' ? msg.message : msg.type}`);
    this._address = msg.address;
    worker.on('exit', (code) => {
      if (this._state === 'running') {
        // A backend that dies under a live frontend would leave mail undeliverable: fail loudly.
        this.log.fatal({ event: 'backend.worker-exited', code }, 'backend worker exited');
        process.exit(1);
      }
    });
    this._state = 'running';
  }

  async stop(drainMs = 30_000): Promise<void> {
    if (!this.worker || this._state !== 'running') return;
    this._state = 'stopping';
    const done = this.next(this.worker);
    this.worker.postMessage({ type: 'stop', drainMs } satisfies ToWorker);
    await done;
    await this.worker.terminate();
    this._state = 'stopped';
  }

  private next(worker: Worker): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  }
}

/** Inside the worker: open the stores, serve, stop on request. */
async function runWorker(config: Config): Promise<void> {
  const log = createLogger({ level: config.log.level, name: config.nodeId });
  routeGrpcLogs(log);
  const dataDir = resolve(config.dataDir);
  const directory = new EmbeddedDirectory(join(dataDir, 'directory'));
  const store = new LmdbMailStore(join(dataDir, 'store'));
  const backend = new Backend({ config, log, directory, store, directoryAdmin: directory });
  const port = parentPort!;
  try {
    await backend.start();
  } catch (err) {
    port.postMessage({ type: 'failed', message: (err as Error).message } satisfies FromWorker);
    return;
  }
  port.postMessage({ type: 'ready', address: backend.address } satisfies FromWorker);
  port.once('message', async (msg: ToWorker) => {
    await backend.stop(msg.drainMs);
    await store.close();
    await directory.close();
    log.flush();
    port.postMessage({ type: 'stopped' } satisfies FromWorker);
  });
}

if (!isMainThread && parentPort) void runWorker(workerData as Config);
