/**
 * THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3), and the THREAD response's list.
 * Trees are walked with explicit stacks: a References header can chain thousands of ids.
 */
import { casemap, compareCodePoints } from './collation.js';
import { sentDate } from './sort.js';
import type { MessageHeaders } from './types.js';

export interface ThreadableMessage {
  seq: number;
  /** INTERNALDATE, ms: the sent date when Date: is missing or does not parse. */
  internalDate: number;
  headers: MessageHeaders;
}

/** A thread: a message (none for a dummy that holds siblings together) and its replies. */
export interface ThreadNode<T> {
  message?: T;
  children: ThreadNode<T>[];
}

/** Sent date, then message number (RFC 5256's order for siblings). */
const byDate = <T extends ThreadableMessage>(a: T, b: T) => sentDate(a) - sentDate(b) || a.seq - b.seq;

/** Children before parents: each node's children are in their final state when it is visited. */
function postOrder<N extends { children: N[] }>(roots: readonly N[], visit: (n: N) => void): void {
  const stack: [N, boolean][] = roots.map((r) => [r, false]);
  while (stack.length) {
    const [node, done] = stack.pop()!;
    if (done) visit(node);
    else {
      stack.push([node, true]);
      for (const c of node.children) stack.push([c, false]);
    }
  }
}

export function threadOrderedSubject<T extends ThreadableMessage>(messages: readonly T[]): ThreadNode<T>[] {
  const rows = messages.map((m) => ({ m, subject: casemap(m.headers.baseSubject) }));
  rows.sort((a, b) => compareCodePoints(a.subject, b.subject) || byDate(a.m, b.m));
  const threads: ThreadNode<T>[] = [];
  let last: { subject: string; node: ThreadNode<T> } | undefined;
  for (const { m, subject } of rows) {
    // The first message of a subject is the thread; the rest are its children, without children.
    if (last && last.subject === subject) last.node.children.push({ message: m, children: [] });
    else threads.push((last = { subject, node: { message: m, children: [] } }).node);
  }
  return threads.sort((a, b) => byDate(a.message!, b.message!));
}

interface Container<T> extends ThreadNode<T> {
  parent?: Container<T>;
  children: Container<T>[];
}

export function threadReferences<T extends ThreadableMessage>(messages: readonly T[]): ThreadNode<T>[] {
  const ids = new Map<string, Container<T>>();
  const all: Container<T>[] = [];
  const byId = (id: string) => {
    let c = ids.get(id);
    if (!c) {
      ids.set(id, (c = { children: [] }));
      all.push(c);
    }
    return c;
  };
  // Whether `a` is `b` or one of its ancestors: linking a under b would make a loop.
  const above = (a: Container<T>, b: Container<T>) => {
    for (let p: Container<T> | undefined = b; p; p = p.parent) if (p === a) return true;
    return false;
  };
  const link = (parent: Container<T>, child: Container<T>) => {
    child.parent = parent;
    parent.children.push(child);
  };

  // (1) Link each message under its references, in message-number order.
  for (const m of [...messages].sort((a, b) => a.seq - b.seq)) {
    const { messageId, references, inReplyTo } = m.headers;
    let c: Container<T>;
    // A missing or repeated Message-ID: the message gets a unique one (only the first keeps it).
    if (messageId === undefined || ids.get(messageId)?.message) all.push((c = { children: [] }));
    else c = byId(messageId);
    c.message = m;
    // (A) References (else In-Reply-To's first id) chained parent to child, keeping existing parents and avoiding loops.
    let last: Container<T> | undefined;
    for (const ref of references.length ? references : inReplyTo ? [inReplyTo] : []) {
      if (ref === messageId) continue;
      const r = byId(ref);
      if (last && !r.parent && !above(r, last)) link(last, r);
      last = r;
    }
    // (B) The message's own references decide its parent.
    if (c.parent) {
      c.parent.children.splice(c.parent.children.indexOf(c), 1);
      c.parent = undefined;
    }
    if (last && !above(c, last)) link(last, c);
  }

  // (2) The root set; (3) dummies pruned: an empty one goes, one with children gives them to its
  // parent, except at the top where it stays unless it has only one.
  const splice = (list: Container<T>[], top: boolean) =>
    list.flatMap((c) => (c.message ? [c] : c.children.length === 0 ? [] : !top || c.children.length === 1 ? c.children : [c]));
  let roots = all.filter((c) => !c.parent);
  postOrder(roots, (n) => (n.children = splice(n.children, false)));
  roots = splice(roots, true);

  // (4) The top level by sent date; a dummy by its first child, its children sorted first.
  const first = (n: Container<T>): T => n.message ?? n.children[0].message!;
  const order = (a: Container<T>, b: Container<T>) => byDate(first(a), first(b));
  for (const n of roots) if (!n.message) n.children.sort(order);
  roots.sort(order);

  // (5) Threads with the same base subject gathered. (A, B) The subject table: a dummy is
  // preferred, then a message that is no reply or forward.
  const subjectOf = (n: Container<T>) => casemap(first(n).headers.baseSubject);
  const isReply = (n: Container<T>) => n.message?.headers.isReplyOrForward ?? false;
  const table = new Map<string, Container<T>>();
  for (const n of roots) {
    const subject = subjectOf(n);
    if (!subject) continue;
    const t = table.get(subject);
    if (!t || (t.message && (!n.message || (isReply(t) && !isReply(n))))) table.set(subject, n);
  }
  // (C) Merge each thread into the table's.
  const merged: Container<T>[] = [];
  const gone = new Set<Container<T>>();
  for (const n of roots) {
    if (gone.has(n)) continue;
    const subject = subjectOf(n);
    const t = subject ? table.get(subject) : undefined;
    if (!t || t === n) merged.push(n);
    else if (!t.message && !n.message) t.children.push(...n.children);
    else if (!t.message || (isReply(n) && !isReply(t))) t.children.push(n);
    else {
      const dummy: Container<T> = { children: [t, n] };
      table.set(subject, dummy);
      gone.add(t);
      const i = merged.indexOf(t);
      if (i >= 0) merged[i] = dummy;
      else merged.push(dummy);
    }
  }

  // (6) Every set of siblings by sent date, the deepest first (a dummy sorts by its first child).
  postOrder(merged, (n) => n.children.sort(order));
  merged.sort(order);
  return merged.map(strip);
}

/** The tree without the parent links (what callers get). */
function strip<T>(c: Container<T>): ThreadNode<T> {
  const top: ThreadNode<T> = { message: c.message, children: [] };
  const stack: [Container<T>, ThreadNode<T>][] = [[c, top]];
  while (stack.length) {
    const [from, to] = stack.pop()!;
    for (const child of from.children) {
      const node: ThreadNode<T> = { message: child.message, children: [] };
      to.children.push(node);
      stack.push([child, node]);
    }
  }
  if (top.message === undefined) delete top.message;
  return top;
}

export function thread<T extends ThreadableMessage>(algorithm: 'REFERENCES' | 'ORDEREDSUBJECT', messages: readonly T[]): ThreadNode<T>[] {
  return algorithm === 'REFERENCES' ? threadReferences(messages) : threadOrderedSubject(messages);
}

/**
 * The THREAD response's data (`(1)(2 3 (4)(5))`, without `* THREAD `): a single reply follows
 * its parent in the same list, several are nested lists; a dummy is its children's lists.
 */
export function formatThreads<T>(threads: readonly ThreadNode<T>[], id: (message: T) => number): string {
  const out: string[] = [];
  const stack: (string | ThreadNode<T>)[] = [];
  const pushLists = (nodes: readonly ThreadNode<T>[]) => {
    for (let i = nodes.length - 1; i >= 0; i--) stack.push(')', nodes[i], '(');
  };
  pushLists(threads);
  while (stack.length) {
    const item = stack.pop()!;
    if (typeof item === 'string') out.push(item);
    else if (item.message === undefined) {
      if (item.children.length === 1) stack.push(item.children[0]);
      else pushLists(item.children);
    } else {
      out.push(String(id(item.message)));
      if (item.children.length === 1) stack.push(item.children[0], ' ');
      else if (item.children.length > 1) {
        pushLists(item.children);
        stack.push(' ');
      }
    }
  }
  return out.join('');
}

/** Threads as plain data, `[id, ...replies]` with 0 for a dummy: how a primary sends THREAD's result to the frontend that formats it. */
export type ThreadData = [number, ...ThreadData[]];

export function toThreadData<T>(threads: readonly ThreadNode<T>[], id: (message: T) => number): ThreadData[] {
  const one = (node: ThreadNode<T>): ThreadData => [node.message === undefined ? 0 : id(node.message), ...node.children.map(one)];
  return threads.map(one);
}

export function fromThreadData(data: readonly ThreadData[]): ThreadNode<number>[] {
  const one = ([id, ...replies]: ThreadData): ThreadNode<number> => ({ ...(id ? { message: id } : {}), children: replies.map(one) });
  return data.map(one);
}
