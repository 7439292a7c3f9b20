//! A whole transfer without sockets (quinn-proto's `Pair` is the model): the server's
//! [`Transfer`], a simulated client that behaves as RFC 1350 / RFC 7440 clients do, and a
//! network between them that loses, duplicates and reorders packets from a seeded generator,
//! on a simulated clock. Every packet goes through the real codec both ways. Each run is
//! deterministic, so a failure names its seed and can be replayed.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::*;
use crate::testing::xorshift;
use crate::wire::tftp::{emit_ack, emit_data_header, emit_oack, DATA_HEADER_LEN};

/// The byte at `offset` of the simulated file.
fn content(offset: u64) -> u8 {
    (offset.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// How the simulated network treats each packet, in percent.
#[derive(Clone, Copy, Debug)]
struct Weather {
    loss: u64,
    duplicate: u64,
    /// Packets held back by up to a few round trips (so they arrive out of order).
    reorder: u64,
}

const CLEAR: Weather = Weather {
    loss: 0,
    duplicate: 0,
    reorder: 0,
};

/// One-way latency before jitter.
const LATENCY: Duration = Duration::from_millis(5);
/// The client's retransmission wait (tftp-hpa and atftp use about a second or more).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// A packet in flight: arrives at `at`; `seq` keeps equal times in sending order.
#[derive(PartialEq, Eq)]
struct InFlight {
    at: Instant,
    seq: u64,
    to_client: bool,
    bytes: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq)) // a min-heap
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct Network {
    weather: Weather,
    random: Box<dyn FnMut() -> u64>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    /// The latest arrival so far in each direction (to the server, to the client): a link
    /// keeps its order; only packets held back on purpose overtake each other.
    last_arrival: [Instant; 2],
    sent: u64,
    lost: u64,
}

impl Network {
    fn chance(&mut self, percent: u64) -> bool {
        percent > 0 && (self.random)() % 100 < percent
    }

    fn send(&mut self, bytes: Vec<u8>, to_client: bool, now: Instant) {
        self.sent += 1;
        if self.chance(self.weather.loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.chance(self.weather.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = Duration::from_micros((self.random)() % 2000);
            let in_order = &mut self.last_arrival[usize::from(to_client)];
            let mut at = (now + LATENCY + jitter).max(*in_order);
            *in_order = at;
            if self.chance(self.weather.reorder) {
                at += Duration::from_millis(1 + (self.random)() % 40);
            }
            self.seq += 1;
            self.queue.push(InFlight {
                at,
                seq: self.seq,
                to_client,
                bytes: bytes.clone(),
            });
        }
    }
}

/// The client: takes blocks in order, acknowledges at the end of each window, on the last
/// block, and with the last in-order block when one arrives out of order (RFC 7440's gap
/// signal); resends its last ACK after [`CLIENT_TIMEOUT`] of silence.
struct Client {
    blksize: usize,
    windowsize: u16,
    /// Next block expected (wire numbering, wraps).
    expected: u16,
    in_window: u16,
    received: u64,
    done: bool,
    last_ack: Option<u16>,
    deadline: Instant,
}

impl Client {
    fn on_packet(&mut self, bytes: &[u8], now: Instant) -> Option<Vec<u8>> {
        let ack = match Packet::parse(bytes).expect("the server sent a valid packet") {
            Packet::Oack(_) if self.expected == 1 && self.last_ack.is_none() => Some(0),
            Packet::Oack(_) => self.last_ack,
            Packet::Data { block, data } if block == self.expected && !self.done => {
                for (i, byte) in data.iter().enumerate() {
                    assert_eq!(
                        *byte,
                        content(self.received + i as u64),
                        "byte {i} of {block}"
                    );
                }
                self.received += data.len() as u64;
                self.expected = block.wrapping_add(1);
                self.in_window += 1;
                self.done = data.len() < self.blksize;
                (self.done || self.in_window == self.windowsize).then_some(block)
            }
            // Out of order, a duplicate, or the last block again after the end.
            Packet::Data { .. } => Some(self.expected.wrapping_sub(1)),
            other => panic!("unexpected {}", other.name()),
        };
        if let Some(block) = ack {
            self.in_window = 0;
            self.last_ack = Some(block);
            self.deadline = now + CLIENT_TIMEOUT;
            return Some(emit_ack(block).to_vec());
        }
        None
    }

    fn on_timeout(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.deadline || self.done {
            return None;
        }
        self.deadline = now + CLIENT_TIMEOUT;
        self.in_window = 0;
        self.last_ack.map(|b| emit_ack(b).to_vec())
    }
}

struct Run {
    outcome: Option<Outcome>,
    received: u64,
    elapsed: Duration,
    sent: u64,
    lost: u64,
    retransmissions: u64,
}

/// What the server sends for `tx`, through the real codec.
fn encode(tx: Transmit, oack: &[u8]) -> Vec<u8> {
    match tx {
        Transmit::Oack => oack.to_vec(),
        Transmit::Data { block, offset, len } => {
            let mut data = Vec::new();
            emit_data_header(&mut data, block);
            data.extend((0..len as u64).map(|i| content(offset + i)));
            assert_eq!(data.len(), DATA_HEADER_LEN + len);
            data
        }
    }
}

/// Simulated time after which a run counts as stalled.
const GIVE_UP: Duration = Duration::from_secs(24 * 3600);

/// Drives one transfer of `size` bytes to its end (or [`GIVE_UP`]).
fn simulate(size: u64, blksize: u16, windowsize: u16, weather: Weather, seed: u64) -> Run {
    let limits = Limits {
        max_blksize: blksize,
        max_windowsize: windowsize,
        timeout: Duration::from_secs(5),
        max_retries: 8, // the service's
    };
    let asked = RequestOptions {
        blksize: Some(blksize),
        tsize: true,
        timeout: None,
        windowsize: Some(windowsize),
    };
    let negotiated = negotiate(&asked, size, &limits);
    let mut server = Transfer::new(size, &negotiated, &limits);
    let oack = emit_oack(&negotiated.oack);
    let start = Instant::now();
    let mut now = start;
    let mut net = Network {
        weather,
        random: Box::new(xorshift(seed)),
        queue: BinaryHeap::new(),
        seq: 0,
        last_arrival: [now; 2],
        sent: 0,
        lost: 0,
    };
    let mut client = Client {
        blksize: usize::from(negotiated.blksize),
        windowsize: negotiated.windowsize,
        expected: 1,
        in_window: 0,
        received: 0,
        done: false,
        last_ack: None,
        deadline: now + CLIENT_TIMEOUT,
    };
    while server.outcome().is_none() && now < start + GIVE_UP {
        while let Some(tx) = server.poll_transmit(now) {
            net.send(encode(tx, &oack), true, now);
        }
        // The next event: a delivery, or either side's timer.
        let next = [
            net.queue.peek().map(|p| p.at),
            server.next_deadline(),
            (!client.done).then_some(client.deadline),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while net.queue.peek().is_some_and(|p| p.at <= now) {
            let packet = net.queue.pop().expect("peeked");
            if packet.to_client {
                if let Some(ack) = client.on_packet(&packet.bytes, now) {
                    net.send(ack, false, now);
                }
            } else {
                let parsed = Packet::parse(&packet.bytes).expect("the client sent a valid ACK");
                server.on_packet(&parsed, now);
            }
        }
        server.on_timeout(now);
        if let Some(ack) = client.on_timeout(now) {
            net.send(ack, false, now);
        }
    }
    Run {
        outcome: server.outcome().cloned(),
        received: client.received,
        elapsed: now - start,
        sent: net.sent,
        lost: net.lost,
        retransmissions: server.retransmissions(),
    }
}

fn assert_complete(run: &Run, size: u64, what: &str) {
    assert_eq!(
        run.outcome,
        Some(Outcome::Complete),
        "{what}: ended {:?} after {:?}, {} of {size} bytes, {} packets sent, {} lost",
        run.outcome,
        run.elapsed,
        run.received,
        run.sent,
        run.lost
    );
    assert_eq!(run.received, size, "{what}: the client got every byte once");
}

#[test]
fn a_clear_network_transfers_every_byte_in_lock_step_and_in_windows() {
    for (size, blksize, windowsize) in [
        (0, 512, 1),
        (512, 512, 1),
        (1000, 512, 4),
        (1_000_000, 1468, 1),
        (1_000_000, 1468, 16),
    ] {
        let run = simulate(size, blksize, windowsize, CLEAR, 1);
        let what = format!("{size} bytes, blksize {blksize}, windowsize {windowsize}");
        assert_complete(&run, size, &what);
        assert_eq!(run.retransmissions, 0, "{what}: nothing to resend");
    }
}

/// 70,000 blocks: the block number passes 65535 and rolls over to 0, under 10 % loss each
/// way. (Lock-step pays one retransmission timeout, 200 ms at least, per loss: this transfer
/// takes about 80 simulated minutes; with windows of 16, about 6.)
#[test]
fn seventy_thousand_blocks_roll_over_through_loss() {
    let size = 70_000 * 512 + 100;
    for (windowsize, seed) in [(1, 7), (16, 8)] {
        let weather = Weather { loss: 10, ..CLEAR };
        let run = simulate(size, 512, windowsize, weather, seed);
        assert_complete(&run, size, &format!("windowsize {windowsize}, seed {seed}"));
        assert!(run.lost > 10_000 && run.retransmissions > 0);
    }
}

/// 10 % loss each way with duplication and reordering, many seeds, several window sizes.
#[test]
fn loss_duplication_and_reordering_never_corrupt_or_stall_a_transfer() {
    let weather = Weather {
        loss: 10,
        duplicate: 5,
        reorder: 10,
    };
    for seed in 1..=24u64 {
        let windowsize = [1, 4, 8, 32][seed as usize % 4];
        let size = 200_000 + seed * 777;
        let run = simulate(size, 1468, windowsize, weather, seed);
        assert_complete(&run, size, &format!("seed {seed}, windowsize {windowsize}"));
    }
}

/// A client that never answers: the server gives up after its retries, in bounded time.
#[test]
fn a_silent_client_is_given_up_on_within_a_minute() {
    let weather = Weather { loss: 100, ..CLEAR };
    let run = simulate(10_000, 512, 4, weather, 3);
    assert_eq!(run.outcome, Some(Outcome::TimedOut));
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
}
