import * as grpc from '@grpc/grpc-js';
import type { Logger, Service, ServiceState } from '@mailgrid/core';
import { proto } from '@mailgrid/protocol';
import { queueHandlers } from './queue-service.js';
import type { QueueStore } from './queue-store.js';

/** The node's Queue admin service on its own gRPC port (`queue.grpcPort`). */
export class QueueServer implements Service {
  readonly name = 'queue-admin';
  private _state: ServiceState = 'new';
  private readonly server = new grpc.Server();
  private _port = 0;

  constructor(
    private readonly options: { host: string; port: number; store: QueueStore; node: string; wake: () => void; log: Logger },
  ) {
    this.server.addService(proto.Queue.service, queueHandlers(options.store, options.node, options.wake));
  }

  get state(): ServiceState {
    return this._state;
  }

  get address(): string {
    return `${this.options.host}:${this._port}`;
  }

  async start(): Promise<void> {
    this._port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${this.options.host}:${this.options.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this._state = 'running';
    this.options.log.info({ event: 'queue.admin-listening', address: this.address }, 'queue admin listening');
  }

  async stop(): Promise<void> {
    this._state = 'stopped';
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }
}
