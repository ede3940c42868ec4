import { buildBackend } from '@mailgrid/backend';
import { createLogger, exitSoon, installRejectionGuard, metrics, Replies, stopAll, type Config, type Logger, type Service, type ServiceState } from '@mailgrid/core';
import { EmbeddedDirectory } from '@mailgrid/directory';
import { envelopeOf, flowServices, newMessageId, queuePath, submissionOf, type Accepted, type Arrival, type Submission } from '@mailgrid/mailflow';
import {
  GrpcHost,
  PortClient,
  PortDeliveryTransport,
  routeGrpcLogs,
  servePort,
  servePortDeliveries,
  type SubmitEnvelope,
  type SubmitEnvelope__Output,
} from '@mailgrid/protocol';
import { QueueStore } from '@mailgrid/queue';
import { join, resolve } from 'node:path';
import { isMainThread, MessageChannel, parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';

/**
 * The single node's backend in a worker thread: its own event loop on the second core, so
 * the SMTP thread stays free. The node's one gRPC host runs here too, with the backend's
 * services and the mail flow's (`flowServices`): the Queue service works on this thread's
 * own handle of the queue's LMDB environment (lmdb-js shares one environment between
 * threads) and asks the main thread to wake its runner. The frontend's deliveries come over
 * `transport`, a MessagePort: on one machine gRPC's framing and HTTP/2 were a sixth of the
 * SMTP thread's CPU and a third of the backend's. What this thread's rules make, and what
 * the Submit service here receives, go over a second port to the node's submit channel on
 * the main thread (submit mode `local` on a single node: its one queue).
 */
type ToWorker = { type: 'stop'; drainMs: number } | { type: 'metrics'; id: number };
type WorkerData = { config: Config; deliveries: MessagePort; submits: MessagePort };
/** A submission crossing to the main thread's submit channel: the Submit envelope and the body. */
type SubmitWire = { envelope: SubmitEnvelope; body: Uint8Array };
type MetricsJson = Awaited<ReturnType<typeof metrics.registry.getMetricsAsJSON>>;
type FromWorker =
  | { type: 'ready'; address: string }
  | { type: 'stopped' }
  | { type: 'failed'; message: string }
  | { type: 'wake' }
  | { type: 'metrics'; id: number; json: MetricsJson };

export class BackendWorker implements Service {
  readonly name = 'backend';
  private _state: ServiceState = 'new';
  private worker: Worker | undefined;
  private _address = '';
  private readonly deliveries = new MessageChannel();
  /** Mail made on the backend thread (rules) and `mailgrid send` come back to the node's submit channel. */
  private readonly submits = new MessageChannel();
  private readonly scrapes = new Map<number, (json: MetricsJson) => void>();
  private scrapeId = 0;
  /** The delivery channel's way to this backend. */
  readonly transport: PortDeliveryTransport;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    /** The main thread's mail flow: its runner to wake, its submit channel to take what this thread makes. */
    private readonly flow: { wake(): void; receive(s: Submission, arrival: Arrival): Promise<Accepted> },
  ) {
    this.transport = new PortDeliveryTransport(this.deliveries.port1, { timeoutMs: config.delivery.timeoutMs });
    servePort<SubmitWire, Accepted>(this.submits.port1, async ({ envelope, body }) => {
      const { submission, arrival } = submissionOf(envelope as SubmitEnvelope__Output, Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      return flow.receive(submission, arrival);
    });
    this.submits.port1.unref();
  }

  get state(): ServiceState {
    return this._state;
  }

  /** The node's gRPC address, once started. */
  get address(): string {
    return this._address;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    // A young generation of 24 MB (V8's default is larger): without gRPC the backend thread's
    // garbage is small; 6 MB cost 15 % more of its CPU in scavenges, the default ~20 MB of RSS.
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { config: this.config, deliveries: this.deliveries.port2, submits: this.submits.port2 } satisfies WorkerData,
      transferList: [this.deliveries.port2, this.submits.port2],
      resourceLimits: { maxYoungGenerationSizeMb: 24 },
    });
    this.worker = worker;
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'wake') this.flow.wake();
      if (msg.type === 'metrics') this.scrapes.get(msg.id)?.(msg.json);
    });
    const msg = await this.next(worker);
    if (msg.type !== 'ready') throw new Error(`backend failed to start: ${msg.type === 'failed' ? msg.message : msg.type}`);
    this._address = msg.address;
    worker.on('exit', (code) => {
      if (this._state === 'running') {
        // A backend that dies under a live frontend would leave mail undeliverable: fail loudly.
        this.log.fatal({ event: 'backend.worker-exited', code }, 'backend worker exited');
        exitSoon(1);
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

  /** The backend thread's metrics (its own prom-client registry), for the node's /metrics; none once it has stopped. */
  async metrics(): Promise<MetricsJson[]> {
    const worker = this.worker;
    if (!worker || this._state !== 'running') return [];
    const id = ++this.scrapeId;
    return new Promise((resolve) => {
      // A thread that does not answer in time leaves its figures out of this scrape.
      const timer = setTimeout(() => done([]), 5_000);
      const done = (figures: MetricsJson[]) => {
        clearTimeout(timer);
        this.scrapes.delete(id);
        resolve(figures);
      };
      this.scrapes.set(id, (json) => done([json]));
      worker.postMessage({ type: 'metrics', id } satisfies ToWorker);
    });
  }

  /** The next lifecycle message (wake-ups and metrics are not). */
  private next(worker: Worker): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      const take = (msg: FromWorker) => {
        if (msg.type === 'wake' || msg.type === 'metrics') return;
        worker.off('message', take);
        resolve(msg);
      };
      worker.on('message', take);
      worker.once('error', reject);
    });
  }
}

/** Inside the worker: the backend role and the node's gRPC host; stop on request. */
async function runWorker({ config, deliveries, submits }: WorkerData): Promise<void> {
  const log = createLogger({ level: config.log.level, name: config.nodeId });
  installRejectionGuard(log);
  routeGrpcLogs(log);
  const port = parentPort!;
  const directory = new EmbeddedDirectory(join(resolve(config.dataDir), 'directory'));
  const toMain = new PortClient<SubmitWire, Accepted>(submits, {
    timeoutMs: config.delivery.timeoutMs,
    timeout: () => Replies.timeout('submit'),
    gone: (why) => Replies.localError(new Error(`main thread: ${why}`)),
  });
  const submit = (s: Submission, arrival: Arrival = { origin: '', log: [], asAccount: false }) => {
    const body = new Uint8Array(s.body);
    return toMain.call({ envelope: envelopeOf({ ...s, id: s.id ?? newMessageId() }, arrival), body }, [body.buffer]);
  };
  const backend = buildBackend({ config, log, directory, directoryAdmin: directory, submit });
  const queue = new QueueStore(queuePath(config));
  const grpc = new GrpcHost({ host: config.grpc.host, port: config.grpc.port, log: log.child({ component: 'grpc' }) });
  grpc.add(
    ...backend.grpc,
    ...flowServices({
      store: queue,
      node: config.nodeId,
      wake: () => port.postMessage({ type: 'wake' } satisfies FromWorker),
      receive: (s, arrival) => submit(s, arrival),
      maxMessageBytes: () => config.smtp.maxMessageBytes,
      log,
    }),
  );
  const services = [...backend.services, grpc, ...backend.after];
  try {
    for (const s of services) await s.start();
  } catch (err) {
    port.postMessage({ type: 'failed', message: (err as Error).message } satisfies FromWorker);
    return;
  }
  servePortDeliveries(deliveries, backend.deliver);
  port.postMessage({ type: 'ready', address: grpc.address } satisfies FromWorker);
  const stop = async (msg: Extract<ToWorker, { type: 'stop' }>) => {
    await stopAll(services, log, msg.drainMs);
    await queue.close();
    await directory.close();
    log.flush();
    port.postMessage({ type: 'stopped' } satisfies FromWorker);
  };
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'stop') {
      port.removeAllListeners('message');
      void stop(msg);
    } else
      metrics.registry.getMetricsAsJSON().then((json) => port.postMessage({ type: 'metrics', id: msg.id, json } satisfies FromWorker));
  });
}

if (!isMainThread && parentPort) void runWorker(workerData as WorkerData);
