import type { AccessListenerName, AccessProtocolName, CodedError, Config, Logger } from '@mailgrid/core';
import type { Socket } from 'node:net';

/** One connection the access layer accepted, handed to its protocol once PROXY, TLS and the cap are done. */
export interface AccessConnection {
  /** The session's id: in its log lines and in the gRPC metadata of the calls it makes. */
  id: string;
  protocol: AccessProtocolName;
  listener: AccessListenerName;
  /** Already TLS on an implicit-TLS listener (the handshake is done). */
  socket: Socket;
  secure: boolean;
  /** The client's address and port: the PROXY header's when a balancer sent one. */
  client: string;
  clientPort: number;
  /** A child of the protocol's logger with the session and the client. */
  log: Logger;
}

/** A protocol's session, as the layer sees it: it ends, and it can be asked to. */
export interface AccessSession {
  /** Resolves once the session has ended and its connection is closed. */
  readonly done: Promise<void>;
  /** SIGTERM: end at the next point the protocol allows (between commands, after a transaction). */
  drain(): void;
  /** The drain's deadline passed: end now, telling the client why where the protocol can. */
  close(): void;
}

/** What a protocol gives the access layer. */
export interface ProtocolHandler {
  /** A session on a connection the layer accepted. */
  open(conn: AccessConnection): AccessSession;
  /**
   * The line that refuses a connection before any session starts (too many connections,
   * an early talker, shutting down), from the protocol's reply table.
   */
  refusal(error: CodedError): string;
  /** A pause before the session starts; a client that talks in it is an early talker (SMTP's greeting delay). */
  greetingDelayMs?(): number;
  /** Live settings changed. */
  applySettings?(config: Config): void;
}
