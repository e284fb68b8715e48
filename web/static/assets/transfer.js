// File transfer and throughput test over data channels.
//
// Each file travels on a data channel of its own (label "file"), ordered and
// reliable, so binary chunks need no framing:
//   sender   -> {"type":"file","name","size","mime","sha256"}   (text)
//   sender   -> size bytes in binary messages of at most CHUNK bytes
//   receiver -> {"type":"file-ack","verdict":"match"|"mismatch"|"unverified"}
// and the sender closes the channel. Backpressure: the sender stops while
// bufferedAmount is above HIGH_WATER and resumes on bufferedamountlow
// (bufferedAmountLowThreshold = LOW_WATER).
//
// Hashing: SubtleCrypto only exists in secure contexts (HTTPS, localhost)
// and cannot hash a stream, so both sides hash the whole file in memory.
// That is why files are capped at MAX_FILE_BYTES. Without a secure context
// on either side the file still arrives, marked "unverified".
//
// The throughput test (label "bench") sends BENCH_BYTES the same way and
// the receiver answers {"type":"bench-done","bytes"} once all arrived.

import { bufferedLow, canHash, sha256Hex } from './util.js';

export const CHUNK = 16 * 1024; // the safe cross-browser message size
export const MAX_FILE_BYTES = 64 * 1024 * 1024; // keep equal to web.MaxFileBytes
export const BENCH_BYTES = 8 * 1024 * 1024;
const LOW_WATER = 256 * 1024;
const HIGH_WATER = 1024 * 1024;
const OPEN_TIMEOUT_MS = 15000;

function waitOpen(dc) {
  if (dc.readyState === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('data channel did not open')), OPEN_TIMEOUT_MS);
    dc.addEventListener('open', () => { clearTimeout(timer); resolve(); }, { once: true });
    dc.addEventListener('close', () => { clearTimeout(timer); reject(new Error('data channel closed')); }, { once: true });
  });
}

function nextText(dc) {
  return new Promise((resolve, reject) => {
    const onMsg = (ev) => {
      if (typeof ev.data !== 'string') return;
      cleanup();
      try { resolve(JSON.parse(ev.data)); } catch { reject(new Error('bad reply')); }
    };
    const onClose = () => { cleanup(); reject(new Error('data channel closed')); };
    const cleanup = () => { dc.removeEventListener('message', onMsg); dc.removeEventListener('close', onClose); };
    dc.addEventListener('message', onMsg);
    dc.addEventListener('close', onClose);
  });
}

/** Sends buf in CHUNK-sized binary messages with backpressure. */
async function sendChunks(dc, buf, onProgress) {
  dc.bufferedAmountLowThreshold = LOW_WATER;
  const bytes = new Uint8Array(buf);
  for (let off = 0; off < bytes.length; off += CHUNK) {
    if (dc.readyState !== 'open') throw new Error('data channel closed');
    if (dc.bufferedAmount > HIGH_WATER) await bufferedLow(dc);
    const end = Math.min(off + CHUNK, bytes.length);
    dc.send(bytes.subarray(off, end));
    onProgress(end);
  }
}

/**
 * Reads a File into memory and hashes it once for all peers.
 * Returns {name, size, mime, buf, sha256} (sha256 "" without SubtleCrypto).
 */
export async function prepareFile(file) {
  if (file.size > MAX_FILE_BYTES) throw new Error(`file is larger than the ${MAX_FILE_BYTES / 1024 / 1024} MiB maximum`);
  const buf = await file.arrayBuffer();
  const sha256 = canHash() ? await sha256Hex(buf) : '';
  return { name: file.name, size: buf.byteLength, mime: file.type || 'application/octet-stream', buf, sha256 };
}

/** Sends a prepared file to one peer; resolves with the receiver's verdict. */
export async function sendFile(pc, f, { onProgress = () => {} } = {}) {
  const dc = pc.createDataChannel('file');
  dc.binaryType = 'arraybuffer';
  try {
    await waitOpen(dc);
    const reply = nextText(dc);
    dc.send(JSON.stringify({ type: 'file', name: f.name, size: f.size, mime: f.mime, sha256: f.sha256 }));
    await sendChunks(dc, f.buf, onProgress);
    const ack = await reply;
    if (ack.type !== 'file-ack') throw new Error(ack.reason || 'the peer refused the file');
    return ack.verdict;
  } finally {
    dc.close();
  }
}

/**
 * Receives one file on channel dc. Callbacks:
 *   onStart({name, size, mime}), onProgress(bytes), onDone({blob, verdict, sha256, expected}), onError(msg)
 */
export function receiveFile(dc, { onStart, onProgress, onDone, onError }) {
  dc.binaryType = 'arraybuffer';
  let header = null;
  let chunks = [];
  let got = 0;
  let finished = false;
  const fail = (reason) => {
    finished = true;
    chunks = [];
    if (dc.readyState === 'open') dc.send(JSON.stringify({ type: 'file-reject', reason }));
    onError(reason);
  };
  const finish = async () => {
    finished = true;
    const blob = new Blob(chunks, { type: header.mime });
    chunks = [];
    let verdict = 'unverified';
    let sha256 = '';
    if (canHash() && header.sha256) {
      sha256 = await sha256Hex(await blob.arrayBuffer());
      verdict = sha256 === header.sha256 ? 'match' : 'mismatch';
    }
    if (dc.readyState === 'open') dc.send(JSON.stringify({ type: 'file-ack', verdict }));
    onDone({ blob, verdict, sha256, expected: header.sha256 });
  };
  dc.addEventListener('message', (ev) => {
    if (finished) return;
    if (!header) {
      let h;
      try { h = typeof ev.data === 'string' ? JSON.parse(ev.data) : null; } catch { h = null; }
      if (!h || h.type !== 'file' || !Number.isSafeInteger(h.size) || h.size < 0 || typeof h.name !== 'string') {
        fail('malformed file header');
        return;
      }
      if (h.size > MAX_FILE_BYTES) {
        fail(`file too large (${h.size} bytes, maximum ${MAX_FILE_BYTES})`);
        return;
      }
      header = {
        name: h.name.slice(0, 255) || 'file',
        size: h.size,
        mime: typeof h.mime === 'string' && h.mime.length < 128 ? h.mime : 'application/octet-stream',
        sha256: typeof h.sha256 === 'string' && /^[0-9a-f]{64}$/.test(h.sha256) ? h.sha256 : '',
      };
      onStart(header);
      if (header.size === 0) finish();
      return;
    }
    if (!(ev.data instanceof ArrayBuffer)) {
      fail('unexpected text message during transfer');
      return;
    }
    got += ev.data.byteLength;
    if (got > header.size) {
      fail('more data than announced');
      return;
    }
    chunks.push(ev.data);
    onProgress(got);
    if (got === header.size) finish();
  });
  dc.addEventListener('close', () => {
    if (!finished) onError(header ? `channel closed after ${got} of ${header.size} bytes` : 'channel closed');
  });
}

/** Runs the throughput test to one peer; resolves with {bytes, ms, bitsPerSecond}. */
export async function runThroughput(pc, bytes = BENCH_BYTES) {
  const dc = pc.createDataChannel('bench');
  dc.binaryType = 'arraybuffer';
  try {
    await waitOpen(dc);
    const reply = nextText(dc);
    const t0 = performance.now();
    dc.send(JSON.stringify({ type: 'bench', bytes }));
    const buf = new ArrayBuffer(Math.min(bytes, HIGH_WATER));
    let sent = 0;
    while (sent < bytes) {
      const n = Math.min(buf.byteLength, bytes - sent);
      await sendChunks(dc, buf.slice(0, n), () => {});
      sent += n;
    }
    const done = await reply;
    const ms = performance.now() - t0;
    if (done.type !== 'bench-done' || done.bytes !== bytes) throw new Error('the peer did not confirm the bytes');
    return { bytes, ms, bitsPerSecond: (bytes * 8) / (ms / 1000) };
  } finally {
    dc.close();
  }
}

/** Answers a throughput test on channel dc. */
export function answerThroughput(dc) {
  dc.binaryType = 'arraybuffer';
  let want = -1;
  let got = 0;
  dc.addEventListener('message', (ev) => {
    if (want < 0) {
      try {
        const h = JSON.parse(ev.data);
        if (h.type === 'bench' && Number.isSafeInteger(h.bytes) && h.bytes > 0 && h.bytes <= 1 << 30) want = h.bytes;
      } catch { /* ignored below */ }
      if (want < 0) dc.close();
      return;
    }
    if (ev.data instanceof ArrayBuffer) got += ev.data.byteLength;
    if (got >= want && dc.readyState === 'open') {
      dc.send(JSON.stringify({ type: 'bench-done', bytes: got }));
      want = Infinity; // answered once
    }
  });
}
