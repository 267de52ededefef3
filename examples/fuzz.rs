//! A mutation fuzzer for storeguard's parsers that runs on the stable toolchain.
//!
//! ```text
//! cargo run --example fuzz -- --seconds 10 all        # every target, 10 s each
//! cargo run --release --example fuzz -- --seconds 600 iop --seed 7
//! ```
//!
//! Why not cargo-fuzz: it needs a nightly compiler (`-Zsanitizer`), and this project pins
//! stable. cargo-afl needs its own compiler wrapper and an AFL++ build; bolero's fuzzing
//! engines are nightly-only too (on stable it is a random property test). So this is a plain,
//! deterministic loop: seeds from `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`,
//! mutated (bit flips, interesting bytes, insertions, deletions, duplications, splices between
//! inputs, and per-target dictionary tokens such as JSON keys the parsers look for), each input
//! run under `catch_unwind`. There is no coverage feedback: a random share of the inputs is
//! kept in a bounded pool so that mutations stack up. A debug build keeps overflow checks on,
//! which is what CI runs (and it is already built by `cargo test`).
//!
//! A panic saves the input to `fuzz/crashes/<target>/<hash>` and the run exits non-zero.
//! Fixed crashes are moved to `fuzz/regressions/<target>/`, which `tests/it/fuzz.rs` replays.

#[path = "../fuzz/targets.rs"]
mod targets;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Mutation fuzzing of storeguard's parsers (stable toolchain)")]
struct Args {
    /// A target, a comma-separated list, or `all`
    #[arg(default_value = "all")]
    target: String,
    /// Seconds per target
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seed of the mutation sequence (same seed, same inputs)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest input, bytes
    #[arg(long, default_value_t = 16 * 1024)]
    max_len: usize,
    /// Where corpus/, regressions/ and crashes/ live
    #[arg(long, default_value = "fuzz")]
    dir: PathBuf,
}

/// Tokens that steer mutations towards what each parser looks for.
fn dictionary(target: &str) -> Vec<&'static [u8]> {
    let json: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"null",
        b"true",
        b"false",
        b"0",
        b"-1",
        b"1e999",
        b"18446744073709551615",
        b"-9223372036854775808",
        b"9223372036854775807",
        b"\"\\u0000\"",
        b"\"\\ud800\"",
        b"{\"a\":",
        b"[[[[[[[[",
        b"\xff\xfe",
        b"\x1b[31m",
    ];
    let toml: &[&[u8]] = &[
        b"=",
        b"\n",
        b"[",
        b"]",
        b"[[",
        b"]]",
        b"\"",
        b"'''",
        b"\"\"\"",
        b"#",
        b".",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"1979-05-27T07:32:00Z",
        b"inf",
        b"nan",
        b"0x7fffffffffffffff",
        b"{ a = 1 }",
        b"[[store]]\n",
        b"[[channel]]\n",
        b"[daemon]\n",
        b"[defaults]\n",
        b"[[maintenance]]\n",
        b"[marketplace.ozon]\n",
        b"[web]\n",
    ];
    let mut v: Vec<&'static [u8]> = Vec::new();
    match target {
        "config" => {
            v.extend_from_slice(toml);
            v.extend_from_slice(&[
                b"id = \"a\"\n",
                b"marketplace = \"ozon\"\n",
                b"marketplace = \"amazon\"\n",
                b"account = \"1\"\n",
                b"schedule = \"*/10 * * * *\"\n",
                b"schedule = \"0 0 0 31 2 *\"\n",
                b"timeout = \"1s\"\n",
                b"region = \"na\"\n",
                b"kind = \"webhook\"\n",
                b"name = \"n\"\n",
                b"channels = [\"n\"]\n",
                b"timezone = \"Asia/Shanghai\"\n",
                b"listen = \"127.0.0.1:0\"\n",
                b"endpoint = \"http://127.0.0.1:1\"\n",
                b"proxy = \"socks5://u@127.0.0.1:1\"\n",
                b"start = 2026-01-01T00:00:00Z\n",
                b"every = \"0 2 * * 0\"\n",
                b"duration = \"2h\"\n",
                b"tags = [\"vip\"]\n",
                b"stores = [\"a*\"]\n",
                b"expiry_warning = [\"14d\", \"0s\"]\n",
                b"history_retention = \"90d\"\n",
            ]);
        }
        "mail_auth" => v.extend_from_slice(&[
            b"Authentication-Results: ",
            b"; dkim=pass header.d=",
            b" header.i=@",
            b"; dmarc=fail header.from=",
            b" (comment (nested))",
            b"\r\n ",
            b"&V4NXPpCuTvY-",
            b"&-",
            b"[Gmail]/Spam",
        ]),
        "mail" => v.extend_from_slice(&[
            b"\r\n",
            b"From: ",
            b"Subject: ",
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"--b\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"=?utf-8?B?",
            b"=?utf-8?Q?",
            b"?=",
            b"@amazon.com>",
            b"@amaz0n.com>",
            b"When: ",
            b"<p>",
            b"https://x.shp.ee/",
        ]),
        "vault_entry" => {
            v.extend_from_slice(toml);
            v.extend_from_slice(&[
                b"generation = ",
                b"client_id = \"1\"\n",
                b"api_key = \"k\"\n",
                b"refresh_token = \"r\"\n",
                b"lwa_client_id = \"i\"\n",
                b"lwa_client_secret = \"s\"\n",
                b"client_secret_rotated_at = ",
                b"app_key = \"a\"\n",
                b"app_secret = \"s\"\n",
                b"access_token = \"t\"\n",
                b"access_token_expires_at = ",
                b"refresh_token_expires_at = ",
                b"url = \"",
                b"https://h/x",
                b"totp_secret = \"JBSWY3DPEHPK3PXP\"\n",
                b"password_changed_at = ",
                b"username = \"u\"\n",
                b"password = \"p\"\n",
                b"signing_secret = \"s\"\n",
                b"bot_token = \"1:a\"\n",
                b"chat_id = \"-1\"\n",
                b"api_token = \"t\"\n",
                b"proxy_password = \"p\"\n",
                b"9999-12-31T23:59:59Z",
                b"-262143-01-01T00:00:00Z",
            ]);
        }
        _ => {
            v.extend_from_slice(json);
            v.extend_from_slice(&[
                b"\"code\"",
                b"\"message\"",
                b"\"msg\"",
                b"\"errcode\"",
                b"\"errmsg\"",
                b"\"StatusCode\"",
                b"\"ok\"",
                b"\"error_code\"",
                b"\"description\"",
                b"\"parameters\"",
                b"\"retry_after\"",
                b"\"error\"",
                b"\"error_description\"",
                b"\"access_token\"",
                b"\"refresh_token\"",
                b"\"expires_in\"",
                b"\"refresh_expires_in\"",
                b"\"expire_time\"",
                b"\"refresh_token_valid_time\"",
                b"\"seller_id\"",
                b"\"user_info\"",
                b"\"profile\"",
                b"\"store_name\"",
                b"\"error_response\"",
                b"\"sub_msg\"",
                b"\"x_response\"",
                b"\"000003\"",
                b"\"IllegalAccessToken\"",
                b"\"ApiCallLimit\"",
                b"\"errors\"",
                b"\"details\"",
                b"\"Unauthorized\"",
                b"\"QuotaExceeded\"",
                b"\"payload\"",
                b"\"marketplace\"",
                b"\"id\"",
                b"\"storeName\"",
                b"\"roles\"",
                b"\"name\"",
                b"\"expires_at\"",
                b"\"subscription\"",
                b"\"is_premium\"",
                b"\"type\"",
                b"\"2026-01-01T00:00:00Z\"",
                b"\"+262142-12-31T23:59:59Z\"",
                b"\"0\"",
                b"9999999999999999",
                b"-86400",
                b"Mon, 01 Jan 2024 00:00:00 GMT",
                b"999999999999",
            ]);
        }
    }
    v
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, pool: &[Vec<u8>], dict: &[&[u8]], max: usize) {
    let rounds = 1 + rng.random_range(0..4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.random_range(0..10) {
            9 if len > 0 => {
                // Replace a number with a boundary value (lifetimes, timestamps, codes).
                let start = rng.random_range(0..len);
                if let Some(a) = (start..len).find(|&i| input[i].is_ascii_digit()) {
                    let b = (a..len)
                        .find(|&i| !input[i].is_ascii_digit())
                        .unwrap_or(len);
                    const NUMBERS: [&[u8]; 10] = [
                        b"0",
                        b"-1",
                        b"18446744073709551615",
                        b"9223372036854775807",
                        b"-9223372036854775808",
                        b"9223372036854775",
                        b"99999999999999999999",
                        b"4294967296",
                        b"1e400",
                        b"253402300800000",
                    ];
                    let n = NUMBERS[rng.random_range(0..NUMBERS.len())];
                    input.splice(a..b, n.iter().copied());
                }
            }
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                const INTERESTING: [u8; 12] = [
                    0, 0xff, 0x7f, 0x80, b'"', b'\\', b'{', b'}', b'\n', b'=', b'0', b'9',
                ];
                input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=16)).min(len);
                input.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=32)).min(len);
                let chunk = input[a..b].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, chunk);
            }
            5 if !pool.is_empty() => {
                let other = &pool[rng.random_range(0..pool.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = (a + rng.random_range(1..=64)).min(other.len());
                    let at = rng.random_range(0..=len);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            6 | 7 if !dict.is_empty() => {
                let tok = dict[rng.random_range(0..dict.len())];
                let at = rng.random_range(0..=len);
                if rng.random_bool(0.3) && len > 0 {
                    let end = (at + tok.len()).min(len);
                    input.splice(at..end, tok.iter().copied());
                } else {
                    input.splice(at..at, tok.iter().copied());
                }
            }
            _ if len > 0 => {
                // Repeat a slice many times (deep nesting, long strings).
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=4)).min(len);
                let chunk = input[a..b].to_vec();
                let times = rng.random_range(2..200);
                let at = rng.random_range(0..=len);
                let rep: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(chunk.len() * times)
                    .collect();
                input.splice(at..at, rep);
            }
            _ => input.push(rng.random()),
        }
    }
    input.truncate(max);
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Report {
    execs: u64,
    crashes: Vec<(String, PathBuf)>,
    pool: usize,
}

fn fuzz_target(args: &Args, target: &str, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed ^ fnv(target.as_bytes()));
    let mut pool: Vec<Vec<u8>> = targets::files(&args.dir.join("corpus"), target)
        .into_iter()
        .chain(targets::files(&args.dir.join("regressions"), target))
        .map(|(_, b)| b)
        .collect();
    if pool.is_empty() {
        pool.push(if targets::is_http(target) {
            targets::http_input(200, "", b"{}")
        } else {
            b"a = 1\n".to_vec()
        });
    }
    let seeds = pool.len();
    let dict = dictionary(target);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut report = Report {
        execs: 0,
        crashes: Vec::new(),
        pool: 0,
    };
    let mut seen_panics = std::collections::HashSet::new();
    // Replay the seeds first, unmutated.
    let mut queue: Vec<Vec<u8>> = pool.clone();
    while Instant::now() < deadline {
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                let mut i = pool[rng.random_range(0..pool.len())].clone();
                mutate(&mut rng, &mut i, &pool, &dict, args.max_len);
                i
            }
        };
        report.execs += 1;
        let result = std::panic::catch_unwind(|| targets::run(target, &input));
        match result {
            Ok(_) => {
                // Keep some inputs so mutations stack up (bounded pool, seeds never evicted).
                if rng.random_ratio(1, 64) {
                    if pool.len() < seeds + 512 {
                        pool.push(input);
                    } else {
                        let i = rng.random_range(seeds..pool.len());
                        pool[i] = input;
                    }
                }
            }
            Err(_) => {
                let msg = LAST_PANIC
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_else(|| "panic".into());
                let dir = args.dir.join("crashes").join(target);
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{:016x}", fnv(&input)));
                let _ = std::fs::write(&path, &input);
                if seen_panics.insert(msg.clone()) {
                    eprintln!(
                        "  CRASH in {target}: {msg}\n    input saved to {}",
                        path.display()
                    );
                    report.crashes.push((msg, path));
                }
            }
        }
    }
    report.pool = pool.len();
    report
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let msg: String = msg.chars().take(160).collect();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{loc}: {msg}"));
    }));
    let list: Vec<&str> = if args.target == "all" {
        targets::TARGETS.to_vec()
    } else {
        args.target.split(',').map(str::trim).collect()
    };
    if let Some(bad) = list.iter().find(|t| !targets::TARGETS.contains(t)) {
        eprintln!(
            "unknown target `{bad}`; targets: all, {}",
            targets::TARGETS.join(", ")
        );
        return std::process::ExitCode::from(2);
    }
    if !Path::new(&args.dir).is_dir() {
        eprintln!(
            "{}: no such directory (run from the repository root)",
            args.dir.display()
        );
        return std::process::ExitCode::from(2);
    }
    let mut crashed = 0;
    println!("| target | seconds | execs | execs/s | pool | crashes |");
    println!("|---|---|---|---|---|---|");
    for t in &list {
        let r = fuzz_target(&args, t, args.seed);
        println!(
            "| {t} | {} | {} | {:.0} | {} | {} |",
            args.seconds,
            r.execs,
            r.execs as f64 / args.seconds.max(1) as f64,
            r.pool,
            r.crashes.len()
        );
        crashed += r.crashes.len();
    }
    if crashed > 0 {
        eprintln!(
            "{crashed} distinct crash(es); inputs under {}/crashes/ — fix, then move them to {}/regressions/<target>/",
            args.dir.display(),
            args.dir.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
