//! Sending a message: SMTP to a relay, or LMTP straight into a local delivery agent such as
//! Dovecot's. Used for the replies to people who report phishing.
//!
//! A deliberately small client: one message per connection, no authentication, no TLS.
//! FIXME: a relay that requires STARTTLS or AUTH cannot be used yet; replies then fail with
//! the relay's refusal in the log and the report's record.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Smtp,
    Lmtp,
}

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The name this client gives in `EHLO`/`LHLO`.
    pub hello_name: String,
    pub timeout: Duration,
}

/// Sends `message` (a whole RFC 5322 message with CRLF or LF line ends) from `from` to `to`.
pub async fn send(
    config: &SmtpConfig,
    from: &str,
    to: &[String],
    message: &[u8],
) -> Result<(), String> {
    tokio::time::timeout(config.timeout, send_inner(config, from, to, message))
        .await
        .map_err(|_| format!("{}:{} did not answer in time", config.host, config.port))?
}

async fn send_inner(
    config: &SmtpConfig,
    from: &str,
    to: &[String],
    message: &[u8],
) -> Result<(), String> {
    let stream = TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", config.host, config.port))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, 220, "greeting").await?;
    let hello = match config.protocol {
        Protocol::Smtp => "EHLO",
        Protocol::Lmtp => "LHLO",
    };
    let mut say = async |line: String, code: u16, step: &str| -> Result<(), String> {
        write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        expect(&mut read, code, step).await
    };
    say(format!("{hello} {}", config.hello_name), 250, hello).await?;
    say(format!("MAIL FROM:<{}>", clean(from)), 250, "MAIL FROM").await?;
    for recipient in to {
        say(format!("RCPT TO:<{}>", clean(recipient)), 250, "RCPT TO").await?;
    }
    say("DATA".into(), 354, "DATA").await?;
    let mut body = Vec::with_capacity(message.len() + 64);
    for line in message.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Dot-stuffing (RFC 5321 4.5.2).
        if line.starts_with(b".") {
            body.push(b'.');
        }
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    write
        .write_all(&body)
        .await
        .map_err(|e| format!("sending the message: {e}"))?;
    // LMTP answers once per recipient; SMTP once.
    let answers = match config.protocol {
        Protocol::Smtp => 1,
        Protocol::Lmtp => to.len(),
    };
    for _ in 0..answers {
        expect(&mut read, 250, "end of DATA").await?;
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// An address without the characters that would break the command line.
fn clean(address: &str) -> String {
    address
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '\r' | '\n'))
        .collect()
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: u16,
    step: &str,
) -> Result<(), String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        if n == 0 {
            return Err(format!("{step}: the server closed the connection"));
        }
        if line.len() > 4096 {
            return Err(format!("{step}: reply line too long"));
        }
        text.push_str(line.trim_end());
        // "250-..." continues, "250 ..." ends.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
        text.push(' ');
    }
    let got: u16 = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    if got == code {
        Ok(())
    } else {
        Err(format!("{step}: the server answered {text:?}"))
    }
}

/// A plain-text message, with the headers an automatic reply needs.
pub fn compose(
    from: &str,
    to: &str,
    subject: &str,
    in_reply_to: Option<&str>,
    body: &str,
    message_id: &str,
) -> Vec<u8> {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = String::new();
    out.push_str(&format!("From: {}\r\n", one_line(from)));
    out.push_str(&format!("To: {}\r\n", one_line(to)));
    out.push_str(&format!(
        "Subject: {}\r\n",
        encode_header(&one_line(subject))
    ));
    out.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
    out.push_str(&format!("Message-ID: <{}>\r\n", one_line(message_id)));
    if let Some(parent) = in_reply_to {
        out.push_str(&format!("In-Reply-To: <{}>\r\n", one_line(parent)));
    }
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    out.push_str(&body.replace("\r\n", "\n").replace('\n', "\r\n"));
    out.push_str("\r\n");
    out.into_bytes()
}

/// An RFC 2047 encoded-word when the text is not plain ASCII.
fn encode_header(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("=?utf-8?B?{encoded}?=")
}
