import * as grpc from '@grpc/grpc-js';
import type { Config, Logger, Service, ServiceState } from '@mailgrid/core';

/** One gRPC service a role offers, ready to be hosted. */
export interface GrpcService {
  /** The service's proto name (`Delivery`, `Queue`, ...), as members advertise it. */
  name: string;
  definition: grpc.ServiceDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

/**
 * The one gRPC server of a node. Every role adds its services (Delivery, Mailbox, Admin,
 * Queue, and later Submit and Replication) and the node advertises one address and the
 * list of names. Stop lets calls under way finish until the drain deadline.
 */
export class GrpcHost implements Service {
  readonly name = 'grpc';
  private _state: ServiceState = 'new';
  // Keepalive pings from this side too: a peer that vanished without a FIN (power, network)
  // ends its streams within seconds, so a mailbox it held is let go.
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': 8 * 1024 * 1024, 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 });
  private readonly names: string[] = [];
  private boundPort = 0;

  constructor(private readonly options: { host: string; port: number; log: Logger }) {}

  add(...services: GrpcService[]): this {
    for (const s of services) {
      this.server.addService(s.definition, s.handlers);
      this.names.push(s.name);
    }
    return this;
  }

  get state(): ServiceState {
    return this._state;
  }

  get services(): string[] {
    return [...this.names];
  }

  /** `host:port` it listens on (the real port when configured as 0). */
  get address(): string {
    return `${this.options.host}:${this.boundPort}`;
  }

  async start(): Promise<void> {
    this._state = 'starting';
    const { host, port } = this.options;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this._state = 'running';
    this.options.log.info({ event: 'grpc.listening', address: this.address, services: this.names }, 'gRPC listening');
  }

  async stop(drainMs = 30_000): Promise<void> {
    if (this._state !== 'running') return;
    this._state = 'stopping';
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.options.log.warn({ event: 'grpc.drain-timeout' }, 'calls still running, forcing shutdown');
        this.server.forceShutdown();
        resolve();
      }, drainMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this._state = 'stopped';
  }
}

/** What a role contributes to a node: its long-running parts (in start order) and its gRPC services. */
export interface RoleParts {
  services: Service[];
  grpc: GrpcService[];
  /** Started once the node's gRPC host is bound, stopped before it drains (a backend's election and replication). */
  after?: Service[];
  /** Applies changed live settings. */
  apply?(config: Config): void;
  /** Why /readyz should say 503 while every service runs (a replica not in its group's in-sync set). */
  notReady?(): string | undefined;
  /** Where its access listeners listen, by the registry's names (/readyz shows them). */
  listeners?(): Record<string, string>;
}
