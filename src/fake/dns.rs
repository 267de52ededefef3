//! A loopback DNS server that publishes DKIM keys, and DKIM-signed security mail: what the
//! mailbox watcher's DKIM check needs in tests and in `storeguard demo` (`[mail] resolver`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A loopback DNS server (UDP) answering TXT queries from a table; anything else is NXDOMAIN.
pub struct Dns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, String>>>,
    pub queries: Arc<Mutex<u64>>,
}

impl Dns {
    pub async fn start() -> std::io::Result<Dns> {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = sock.local_addr()?;
        let records: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let queries: Arc<Mutex<u64>> = Arc::default();
        let (r, q) = (records.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                *q.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let reply = answer(&buf[..n], &r.lock().unwrap_or_else(|e| e.into_inner()));
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
        Ok(Dns {
            addr,
            records,
            queries,
        })
    }

    pub fn txt(&self, name: &str, value: &str) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.trim_end_matches('.').to_lowercase(), value.to_string());
    }
}

/// The reply to one query: its question echoed, and the TXT record when there is one.
fn answer(q: &[u8], records: &HashMap<String, String>) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    let name = labels.join(".");
    let found = records.get(&name).filter(|_| qtype == 16);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[..2]); // id
    out.extend_from_slice(&[0x81, if found.is_some() { 0x80 } else { 0x83 }]);
    out.extend_from_slice(&[0, 1, 0, u8::from(found.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(&q[12..question_end]);
    if let Some(v) = found {
        let mut rdata = Vec::new();
        for chunk in v.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// An Ed25519 DKIM key for `domain` under `selector`, published in `dns`.
pub struct DkimKey {
    pkcs8: Vec<u8>,
    pub domain: String,
    pub selector: String,
}

impl DkimKey {
    pub fn new(domain: &str, selector: &str, dns: Option<&Dns>) -> DkimKey {
        use base64::Engine;
        use mail_auth::common::crypto::Ed25519Key;
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("an Ed25519 key");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("the key just made");
        let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
        if let Some(dns) = dns {
            dns.txt(
                &format!("{selector}._domainkey.{domain}"),
                &format!("v=DKIM1; k=ed25519; p={public}"),
            );
        }
        DkimKey {
            pkcs8,
            domain: domain.into(),
            selector: selector.into(),
        }
    }

    /// The message with a DKIM-Signature header of this key on top.
    pub fn sign(&self, message: &str) -> Vec<u8> {
        use mail_auth::common::crypto::Ed25519Key;
        use mail_auth::common::headers::HeaderWriter;
        use mail_auth::dkim::DkimSigner;
        let key = Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("the key made in new");
        let sig = DkimSigner::from_key(key)
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(message.as_bytes())
            .expect("signing a well-formed message");
        let mut out = sig.to_header().into_bytes();
        out.extend_from_slice(message.as_bytes());
        out
    }
}

/// A security mail, CRLF-terminated lines.
pub fn mail(to: &str, from: &str, subject: &str, message_id: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 01 Dec 2026 19:12:00 +0000\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
        body.replace('\n', "\r\n")
    )
}
