import * as grpc from '@grpc/grpc-js';
import { ADMIN_CODES, AdminError, CodedError, MailError, Replies } from '@mailgrid/core';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fromServiceError, STATUS_OF_CODE, toServiceError } from './status.js';

// Non-ASCII on purpose: texts with UTF-8 addresses must cross too.
const SAMPLE = 'jö@exämple.test';

/** Every error `Replies` makes, by entry name (acceptances are replies, not errors). */
const answers = Object.entries(Replies).flatMap(([name, make]) => {
  const made: unknown = (make as (...args: unknown[]) => unknown)(...Array(make.length).fill(SAMPLE));
  return CodedError.is(made) ? [{ name, err: made }] : [];
});

const RETRIED = new Set([grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED, grpc.status.DEADLINE_EXCEEDED]);

/** A ServiceError as a client gets it, without a server: status, details and metadata. */
const received = (err: unknown) => Object.assign(new Error('call failed'), toServiceError(err)) as grpc.ServiceError;

test('every code in Replies has a decided status, and the table names no other code', () => {
  const codes = new Set(answers.map((a) => a.err.code));
  for (const { name, err } of answers) assert.ok(err.code in STATUS_OF_CODE, `Replies.${name} (${err.code}) has no gRPC status in STATUS_OF_CODE`);
  for (const code of Object.keys(STATUS_OF_CODE)) assert.ok(codes.has(code), `STATUS_OF_CODE names ${code}, which no Replies entry makes`);
});

test('an admin answer is an AdminError and a MailError never uses an admin code', () => {
  for (const { name, err } of answers) {
    assert.equal(AdminError.is(err), (ADMIN_CODES as readonly string[]).includes(err.code), `Replies.${name} (${err.code})`);
    assert.notEqual(MailError.is(err), AdminError.is(err), `Replies.${name} is exactly one kind`);
  }
  for (const code of ADMIN_CODES) assert.equal(grpc.status[STATUS_OF_CODE[code]], code, 'an admin code is its own gRPC status');
});

test('a generic client retries only what may succeed: no definite answer has a status it retries', () => {
  for (const { name, err } of answers) {
    if (RETRIED.has(STATUS_OF_CODE[err.code])) assert.ok(err.retryable, `Replies.${name} (${err.code}) is definite but ${grpc.status[STATUS_OF_CODE[err.code]]}`);
  }
});

test('the statuses the issue names', () => {
  const want: Record<string, keyof typeof grpc.status> = {
    QUEUE_FULL: 'RESOURCE_EXHAUSTED',
    DISK_FULL: 'RESOURCE_EXHAUSTED',
    STALE_EPOCH: 'FAILED_PRECONDITION',
    NOT_PRIMARY: 'FAILED_PRECONDITION',
    TIMEOUT: 'DEADLINE_EXCEEDED',
    UNIMPLEMENTED: 'UNIMPLEMENTED',
    SUBMIT_DENIED: 'PERMISSION_DENIED',
    MAILBOX_IN_USE: 'ABORTED',
    BACKEND_UNAVAILABLE: 'UNAVAILABLE',
    ETCD_UNAVAILABLE: 'UNAVAILABLE',
    LOCAL_ERROR: 'UNAVAILABLE',
    STORAGE_FAILED: 'UNAVAILABLE',
  };
  for (const [code, name] of Object.entries(want)) assert.equal(grpc.status[STATUS_OF_CODE[code]], name, code);
});

test('every answer round-trips: status from the table, the same kind, code, text and SMTP reply', () => {
  for (const { name, err } of answers) {
    const wire = received(err);
    assert.equal(wire.code, STATUS_OF_CODE[err.code], `Replies.${name}`);
    assert.equal(wire.details, err.text);
    const back = fromServiceError(wire);
    assert.equal(back.constructor, err.constructor, `Replies.${name} comes back as a ${err.constructor.name}`);
    assert.equal(back.code, err.code);
    assert.equal(back.text, err.text);
    assert.equal(back.retryable, err.retryable);
    if (MailError.is(err)) assert.deepEqual((back as MailError).reply, err.reply);
    else assert.ok(!('reply' in back), `Replies.${name} carries no SMTP reply`);
  }
});

test('anything else crosses as a temporary 451 LOCAL_ERROR, never a definite answer', () => {
  const back = fromServiceError(received(new Error('disk on fire')));
  assert.ok(MailError.is(back));
  assert.equal(back.code, 'LOCAL_ERROR');
  assert.equal(back.reply.code, 451);
});

test('a status without our metadata (a transport fault, another server) is a temporary MailError', () => {
  const bare = (code: grpc.status, metadata = new grpc.Metadata()) => fromServiceError(Object.assign(new Error('x'), { code, details: 'x', metadata }), 'test call');
  const want: [grpc.status, string][] = [
    [grpc.status.DEADLINE_EXCEEDED, 'TIMEOUT'],
    [grpc.status.RESOURCE_EXHAUSTED, 'OUT_OF_RESOURCES'],
    [grpc.status.UNIMPLEMENTED, 'UNIMPLEMENTED'],
    [grpc.status.UNAVAILABLE, 'BACKEND_UNAVAILABLE'],
    [grpc.status.NOT_FOUND, 'BACKEND_UNAVAILABLE'],
    [grpc.status.INTERNAL, 'BACKEND_UNAVAILABLE'],
    [grpc.status.CANCELLED, 'BACKEND_UNAVAILABLE'],
  ];
  for (const [code, mail] of want) {
    const err = bare(code);
    assert.ok(MailError.is(err) && err.retryable, grpc.status[code]);
    assert.equal(err.code, mail, grpc.status[code]);
  }
  const garbled = new grpc.Metadata();
  garbled.set('x-mailgrid-reply', '{not json');
  assert.equal(bare(grpc.status.DEADLINE_EXCEEDED, garbled).code, 'TIMEOUT');
  const unknownKind = new grpc.Metadata();
  unknownKind.set('x-mailgrid-reply', JSON.stringify({ code: 'NO_SUCH_CODE', text: 'x' }));
  assert.equal(bare(grpc.status.UNAVAILABLE, unknownKind).code, 'BACKEND_UNAVAILABLE');
});

describe('over a real gRPC call', () => {
  // A service of one method that fails with the Replies entry the request names.
  const path = '/mailgrid.test.Answers/Fail';
  const codec = { serialize: (s: string) => Buffer.from(s), deserialize: (b: Buffer) => b.toString() };
  const method = { path, requestStream: false, responseStream: false, requestSerialize: codec.serialize, requestDeserialize: codec.deserialize, responseSerialize: codec.serialize, responseDeserialize: codec.deserialize };
  const server = new grpc.Server();
  let client: grpc.Client;

  before(async () => {
    server.addService({ Fail: method } as grpc.ServiceDefinition, {
      Fail: (call: grpc.ServerUnaryCall<string, string>, callback: grpc.sendUnaryData<string>) => callback(toServiceError(answers.find((a) => a.name === call.request)!.err)),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  test('every answer arrives as it was sent', async () => {
    for (const { name, err } of answers) {
      const wire = await new Promise<grpc.ServiceError>((resolve, reject) =>
        client.makeUnaryRequest(path, codec.serialize, codec.deserialize, name, (e) => (e ? resolve(e) : reject(new Error('no error')))),
      );
      assert.equal(wire.code, STATUS_OF_CODE[err.code], `Replies.${name}`);
      const back = fromServiceError(wire);
      assert.equal(back.constructor, err.constructor, `Replies.${name}`);
      assert.equal(back.code, err.code);
      assert.equal(back.text, err.text);
      if (MailError.is(err)) assert.deepEqual((back as MailError).reply, err.reply);
    }
  });
});
