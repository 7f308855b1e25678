"""The harness's independent Sluice load generator: Python grpcio (C-core HTTP/2 transport), written only
against proto/ (message classes built at run time from the descriptor set `npm run build` writes to
dist/descriptors.binpb) plus its own Kafka v2 batch writer and reader. None of Sluice's TypeScript
client is involved, so a figure measured with it does not depend on that client.

    /usr/bin/python3 py_load.py DESCRIPTORS JOB_JSON     (bench/run.ts --client python runs it)

It runs one LoadJob (bench/harness/types.ts) and prints one LoadResult as JSON on its last stdout line:
  produce-raw         one pre-encoded v2 batch (job.recordsPerRequest random values), `inflight` requests
                      outstanding (grpcio futures), until the duration is up;
  produce-structured  the same records as protobuf Records (the broker builds the batch);
  consume             Fetch of raw batches from offset 0 until job.totalRecords were seen;
  e2e                 a paced producer (structured records, the intended send time in each value's
                      first 8 bytes) and a raw Subscribe reader in a thread; latency = receive time
                      minus intended send time (no coordinated omission), as load.ts measures it;
                      the first job.warmupS seconds are paced alike but kept apart (coldLatency).
`self` reports this process's CPU and, in place of an event-loop delay, how late a 10 ms sampler thread
woke (GIL or CPU starvation shows there the way a stalled loop does in Node).
"""
import json
import os
import struct
import sys
import threading
import time
from collections import deque

import grpc
from google.protobuf import descriptor_pb2, message_factory

DESCRIPTORS, JOB = sys.argv[1], json.loads(sys.argv[2])
fds = descriptor_pb2.FileDescriptorSet.FromString(open(DESCRIPTORS, 'rb').read())
M = message_factory.GetMessages(list(fds.file))
OPTIONS = [('grpc.max_receive_message_length', 64 << 20), ('grpc.max_send_message_length', 64 << 20)]
# One channel per connection; grpcio shares subchannels between channels with equal args unless told not to.
channels = [grpc.insecure_channel('127.0.0.1:%d' % JOB['port'], options=OPTIONS + [('grpc.use_local_subchannel_pool', 1)])
            for _ in range(max(1, JOB.get('connections') or 1))]
STALL_P99_MS, STALL_MAX_MS, SAMPLE_MS = 5.0, 50.0, 10.0


def method(channel, kind, name, req, res):
    call = channel.unary_unary if kind == 'unary' else channel.unary_stream
    return call('/sluice.v1.%s/%s' % ('Admin' if name == 'CreateTopic' else 'Broker', name),
                request_serializer=M['sluice.v1.' + req].SerializeToString, response_deserializer=M['sluice.v1.' + res].FromString)


# --- Kafka RecordBatch v2, written and read here (CRC-32C, zig-zag varints) ----------------------------

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def zigzag(n):
    v = (n << 1) ^ (n >> 63)
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_batch(values, now_ms):
    records = bytearray()
    for i, v in enumerate(values):
        body = b'\x00' + zigzag(0) + zigzag(i) + zigzag(-1) + zigzag(len(v)) + v + zigzag(0)
        records += zigzag(len(body)) + body
    # attributes..end: attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, epoch, baseSequence, count
    tail = struct.pack('>hiqqqhii', 0, len(values) - 1, now_ms, now_ms, -1, -1, -1, len(values)) + bytes(records)
    crc = crc32c(tail)
    length = 4 + 1 + 4 + len(tail)  # leaderEpoch, magic, crc, rest
    return struct.pack('>qiibI', 0, length, -1, 2, crc) + tail


def read_varint(buf, pos):
    raw, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7


def values_of(batches, start_offset, on_value):
    """Calls on_value(value) for each record at or after start_offset (uncompressed batches only)."""
    pos, n = 0, 0
    while pos + 61 <= len(batches):
        base, size = struct.unpack_from('>qi', batches, pos)
        count = struct.unpack_from('>i', batches, pos + 57)[0]
        p = pos + 61
        for _ in range(count):
            length, p = read_varint(batches, p)
            end = p + length
            p += 1
            _, p = read_varint(batches, p)  # timestamp delta (small here)
            delta, p = read_varint(batches, p)
            klen, p = read_varint(batches, p)
            p += max(0, klen)
            vlen, p = read_varint(batches, p)
            if base + delta >= start_offset and vlen >= 0:
                on_value(batches[p:p + vlen])
                n += 1
            p = end
        pos += size + 12
    return n


def count_from(batches, start_offset):
    pos, n = 0, 0
    while pos + 61 <= len(batches):
        base, size = struct.unpack_from('>qi', batches, pos)
        count = struct.unpack_from('>i', batches, pos + 57)[0]
        n += max(0, min(count, base + count - start_offset))
        pos += size + 12
    return n


# --- This process's own health ----------------------------------------------------------------------

class SelfProbe:
    def __init__(self):
        self.delays, self.stopped = [], False
        self.cpu0, self.t0 = time.process_time(), time.perf_counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for _ in range(10_000_000):
            if self.stopped:
                return
            t = time.perf_counter()
            time.sleep(SAMPLE_MS / 1000)
            self.delays.append(max(0.0, (time.perf_counter() - t) * 1000 - SAMPLE_MS))

    def stop(self):
        self.stopped = True
        elapsed = max(1e-3, time.perf_counter() - self.t0)
        d = sorted(self.delays) or [0.0]
        pct = lambda q: d[min(len(d) - 1, int(q * len(d)))]
        r = {'cpuCores': (time.process_time() - self.cpu0) / elapsed, 'loopDelayP50Ms': pct(0.5), 'loopDelayP99Ms': pct(0.99), 'loopDelayMaxMs': d[-1]}
        r['stalled'] = r['loopDelayP99Ms'] > STALL_P99_MS or r['loopDelayMaxMs'] > STALL_MAX_MS
        return r


def now_ms():
    return time.time() * 1000


# --- Loads ------------------------------------------------------------------------------------------

def produce_stubs():
    return [method(c, 'unary', 'Produce', 'ProduceRequest', 'ProduceResponse') for c in channels]


def run_produce(result):
    n, size = JOB['recordsPerRequest'], JOB['recordBytes']
    values = [os.urandom(size) for _ in range(n)]
    if JOB['kind'] == 'produce-structured':
        req = M['sluice.v1.ProduceRequest'](topic=JOB['topic'], partition=0, acks=2, records=[M['sluice.v1.Record'](value=v) for v in values])
    else:
        req = M['sluice.v1.ProduceRequest'](topic=JOB['topic'], partition=0, acks=2, record_batch=encode_batch(values, int(now_ms())))
    stubs = produce_stubs()
    acked, timeline = 0, []
    result['startMs'] = now_ms()
    deadline = time.perf_counter() + JOB['durationS']
    pending, i = deque(), 0
    next_sample = 0.0
    while time.perf_counter() < deadline and i < 100_000_000:
        while len(pending) < JOB['inflight']:
            pending.append(stubs[i % len(stubs)].future(req, timeout=30))
            i += 1
        pending.popleft().result()
        acked += n
        if time.perf_counter() >= next_sample:
            timeline.append([now_ms(), acked])
            next_sample = time.perf_counter() + 0.1
    for f in pending:
        f.result()
        acked += n
    result['endMs'] = now_ms()
    timeline.append([result['endMs'], acked])
    result.update(records=acked, bytes=acked * size, timeline=timeline)


def run_consume(result):
    fetch = method(channels[0], 'unary', 'Fetch', 'FetchRequest', 'FetchResponse')
    total, seen, offset, timeline = JOB.get('totalRecords') or 0, 0, 0, []
    result['startMs'] = now_ms()
    deadline = time.perf_counter() + JOB['durationS'] * 3
    for _ in range(10_000_000):
        if seen >= total or time.perf_counter() >= deadline:
            break
        res = fetch(M['sluice.v1.FetchRequest'](topic=JOB['topic'], partition=0, offset=offset, max_bytes=1 << 20, max_wait_ms=0, raw=True), timeout=30)
        seen += count_from(res.record_batches, offset)
        offset = res.next_offset
        timeline.append([now_ms(), seen])
    result['endMs'] = now_ms()
    result.update(records=seen, bytes=seen * JOB['recordBytes'], timeline=timeline)


def run_e2e(result):
    rate, size = JOB.get('ratePerS') or 10_000, JOB['recordBytes']
    # (intended send time, latency) of every record; those due before measured_from are the warm-up's.
    latencies, received, measured_from = [], [0], [float('inf')]
    list_offsets = method(channels[0], 'unary', 'ListOffsets', 'ListOffsetsRequest', 'ListOffsetsResponse')
    latest = list_offsets(M['sluice.v1.ListOffsetsRequest'](topic=JOB['topic'], partitions=[0], spec=2), timeout=10)
    start_offset = latest.offsets[0].offset if latest.offsets else 0
    subscribe = method(channels[0], 'stream', 'Subscribe', 'SubscribeRequest', 'FetchResponse')
    stream = subscribe(M['sluice.v1.SubscribeRequest'](topic=JOB['topic'], partition=0, offset=start_offset, raw=True))

    def on_value(v):
        if len(v) >= 8:
            due = struct.unpack_from('<d', v, 0)[0]
            latencies.append((due, time.perf_counter() * 1000 - due))
            received[0] += 1

    def read():
        try:
            for res in stream:
                values_of(res.record_batches, start_offset, on_value)
        except grpc.RpcError:
            pass  # cancelled at the end; missing records are counted

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)
    produce = produce_stubs()[0]
    pool = [os.urandom(size) for _ in range(1024)]
    warmup_s = JOB.get('warmupS') or 0
    total = int(rate * (warmup_s + JOB['durationS']))
    sent, acked, failed, pending, errors, timeline = 0, 0, 0, deque(), [], []
    start = time.perf_counter() * 1000
    measured_from[0] = start + warmup_s * 1000
    result['startMs'] = now_ms()
    send_deadline = start + (warmup_s + JOB['durationS']) * 1000 + 1000
    for _ in range(10_000_000):
        t = time.perf_counter() * 1000
        if sent >= total or t >= send_deadline:
            break
        due = min(total, int((t - start) * rate / 1000))
        if due > sent and sent - acked - failed < 50_000:
            n = min(due - sent, 5000)
            records = []
            for k in range(n):
                v = bytearray(pool[(sent + k) % len(pool)])
                struct.pack_into('<d', v, 0, start + (sent + k) * 1000 / rate)
                records.append(M['sluice.v1.Record'](value=bytes(v)))
            pending.append((n, produce.future(M['sluice.v1.ProduceRequest'](topic=JOB['topic'], partition=0, acks=2, records=records), timeout=30)))
            sent += n
        while pending and pending[0][1].done():
            n, f = pending.popleft()
            try:
                f.result()
                acked += n
            except grpc.RpcError as e:
                failed += n
                if len(errors) < 10:
                    errors.append(str(e.code()))
        timeline.append([now_ms(), acked])
        time.sleep(0.001)
    sent_end = now_ms()
    for n, f in pending:
        try:
            f.result()
            acked += n
        except grpc.RpcError:
            failed += n
    drain = time.perf_counter() + 5
    while received[0] < sent and time.perf_counter() < drain:
        time.sleep(0.01)
    result['endMs'] = now_ms()
    stream.cancel()
    def summary(values):
        lat = sorted(values) or [0.0]
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        return {'count': len(values), 'p50Ms': pct(0.5), 'p99Ms': pct(0.99), 'p999Ms': pct(0.999), 'maxMs': lat[-1]}
    result.update(records=acked, sent=sent, achievedRatePerS=sent * 1000 / max(1, sent_end - result['startMs']),
                  bytes=acked * size, timeline=timeline[::10] + [[result['endMs'], acked]], missing=sent - received[0],
                  latency=summary([l for due, l in latencies if due >= measured_from[0]]),
                  coldLatency=summary([l for _, l in latencies]))
    result['errors'] += errors


def main():
    result = {'job': JOB, 'records': 0, 'bytes': 0, 'startMs': 0, 'endMs': 0, 'timeline': [], 'errors': []}
    if JOB.get('create'):
        create = method(channels[0], 'unary', 'CreateTopic', 'CreateTopicRequest', 'CreateTopicResponse')
        create(M['sluice.v1.CreateTopicRequest'](name=JOB['topic'], partitions=1, replication_factor=1, configs=JOB.get('topicConfigs') or {}), timeout=30)
    probe = SelfProbe()
    kind = JOB['kind']
    if kind == 'consume':
        run_consume(result)
    elif kind == 'e2e':
        run_e2e(result)
    else:
        run_produce(result)
    result['self'] = probe.stop()
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
