//! One IMAP4rev1 connection: plain TCP, implicit TLS or STARTTLS; tagged commands with quoted
//! or literal string arguments; responses read whole, literals included, under a timeout.

use super::parse::{Response, Status, StatusKind, Value, literal_length, parse_response};
use super::{ImapError, TlsMode};
use rustls_pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest response accepted, literals included. A UID SEARCH of a very large folder
/// stays well below it; anything larger is a broken or hostile server.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// The longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

/// A byte stream the connection can run over: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One argument of a command.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    /// Sent as it is: a keyword, a number, a sequence set or a list built by the caller.
    Raw(&'a str),
    /// A string (an IMAP astring): sent quoted, or as a literal when quoting cannot carry it.
    Str(&'a str),
}

/// What the server answered to one command.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The tagged completion.
    pub status: Status,
    /// Untagged data responses that arrived with it, such as `SEARCH` and `FETCH`.
    pub data: Vec<Vec<Value>>,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        self.status.kind == StatusKind::Ok
    }
}

/// An open connection to an IMAP server.
pub(crate) struct Connection {
    stream: BufReader<Box<dyn Io>>,
    next_tag: u32,
    timeout: Duration,
}

impl Connection {
    /// Connects, reads the greeting, and upgrades to TLS as `tls` asks. Returns the greeting.
    pub async fn connect(
        host: &str,
        port: u16,
        tls: TlsMode,
        connector: Option<&TlsConnector>,
        timeout: Duration,
    ) -> Result<(Connection, Status), ImapError> {
        let address = format!("{host}:{port}");
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ImapError::Timeout(timeout))?
            .map_err(|source| ImapError::Connect { address, source })?;
        let stream: Box<dyn Io> = match tls {
            TlsMode::Tls => handshake(Box::new(tcp), host, connector, timeout).await?,
            TlsMode::None | TlsMode::Starttls => Box::new(tcp),
        };
        let mut conn = Connection {
            stream: BufReader::new(stream),
            next_tag: 1,
            timeout,
        };

        let greeting = match conn.read_response().await? {
            Response::Status(status)
                if matches!(status.kind, StatusKind::Ok | StatusKind::Preauth) =>
            {
                status
            }
            Response::Status(status) => return Err(ImapError::Greeting(status.to_string())),
            other => {
                return Err(ImapError::Protocol(format!(
                    "unexpected greeting {other:?}"
                )));
            }
        };
        if tls == TlsMode::Starttls {
            conn = conn.starttls(host, connector).await?;
        }
        Ok((conn, greeting))
    }

    /// Sends STARTTLS and continues over TLS.
    async fn starttls(
        mut self,
        host: &str,
        connector: Option<&TlsConnector>,
    ) -> Result<Connection, ImapError> {
        let reply = self.command(&[Arg::Raw("STARTTLS")]).await?;
        if !reply.is_ok() {
            return Err(ImapError::Starttls(reply.status.to_string()));
        }
        // Anything the server sent after its OK arrived in plain text and could have been
        // injected by a man in the middle; it must not be read as if it came over TLS.
        if !self.stream.buffer().is_empty() {
            return Err(ImapError::Protocol(
                "data after the STARTTLS response".to_owned(),
            ));
        }
        let plain = self.stream.into_inner();
        let stream = handshake(plain, host, connector, self.timeout).await?;
        Ok(Connection {
            stream: BufReader::new(stream),
            next_tag: self.next_tag,
            timeout: self.timeout,
        })
    }

    /// Sends one command and reads up to its tagged completion.
    pub async fn command(&mut self, args: &[Arg<'_>]) -> Result<Reply, ImapError> {
        let tag = format!("p{}", self.next_tag);
        self.next_tag += 1;
        let verb = args.iter().take(2).map(|a| match a {
            Arg::Raw(s) => *s,
            Arg::Str(_) => "",
        });
        tracing::trace!(
            tag,
            command = verb.collect::<Vec<_>>().join(" "),
            "imap command"
        );

        let mut data = Vec::new();
        let mut line = tag.clone().into_bytes();
        for arg in args {
            line.push(b' ');
            match arg {
                Arg::Raw(s) => line.extend_from_slice(s.as_bytes()),
                Arg::Str(s) => match quoted(s) {
                    Some(q) => line.extend_from_slice(&q),
                    None => {
                        line.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
                        self.write(&line).await?;
                        line.clear();
                        if let Some(status) = self.await_continuation(&tag, &mut data).await? {
                            return Ok(Reply { status, data });
                        }
                        line.extend_from_slice(s.as_bytes());
                    }
                },
            }
        }
        line.extend_from_slice(b"\r\n");
        self.write(&line).await?;
        let status = self.read_completion(&tag, &mut data).await?;
        Ok(Reply { status, data })
    }

    /// Waits for the `+` that lets a literal follow; returns the completion instead when the
    /// server refused the command before it.
    async fn await_continuation(
        &mut self,
        tag: &str,
        data: &mut Vec<Vec<Value>>,
    ) -> Result<Option<Status>, ImapError> {
        loop {
            match self.read_response().await? {
                Response::Continuation => return Ok(None),
                Response::Tagged { tag: t, status } if t == tag => return Ok(Some(status)),
                other => self.keep_untagged(other, data)?,
            }
        }
    }

    async fn read_completion(
        &mut self,
        tag: &str,
        data: &mut Vec<Vec<Value>>,
    ) -> Result<Status, ImapError> {
        let mut bye = None;
        loop {
            let response = match self.read_response().await {
                Ok(response) => response,
                Err(ImapError::Closed) => return Err(bye.map_or(ImapError::Closed, ImapError::Bye)),
                Err(e) => return Err(e),
            };
            match response {
                Response::Tagged { tag: t, status } if t == tag => return Ok(status),
                Response::Status(status) if status.kind == StatusKind::Bye => {
                    bye = Some(status.text);
                }
                other => self.keep_untagged(other, data)?,
            }
        }
    }

    fn keep_untagged(
        &self,
        response: Response,
        data: &mut Vec<Vec<Value>>,
    ) -> Result<(), ImapError> {
        match response {
            Response::Data(values) => data.push(values),
            Response::Status(_) => {}
            Response::Continuation => {
                return Err(ImapError::Protocol(
                    "unexpected continuation request".to_owned(),
                ));
            }
            Response::Tagged { tag, .. } => {
                return Err(ImapError::Protocol(format!(
                    "completion for unknown tag {tag}"
                )));
            }
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ImapError> {
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| ImapError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response, ImapError> {
        let read = read_raw(&mut self.stream);
        let bytes = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ImapError::Timeout(self.timeout))??;
        parse_response(&bytes).map_err(|e| ImapError::Protocol(e.to_string()))
    }
}

/// Reads one response: a line, and for each literal it announces, the literal and the rest of
/// the line after it.
async fn read_raw(stream: &mut BufReader<Box<dyn Io>>) -> Result<Vec<u8>, ImapError> {
    let mut buf = Vec::new();
    loop {
        let start = buf.len();
        if start >= MAX_RESPONSE {
            return Err(ImapError::TooLarge(MAX_RESPONSE));
        }
        let budget = (MAX_RESPONSE - start) as u64;
        let n = (&mut *stream)
            .take(budget)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(ImapError::Closed);
        }
        if !buf.ends_with(b"\n") {
            return Err(if buf.len() >= MAX_RESPONSE {
                ImapError::TooLarge(MAX_RESPONSE)
            } else {
                ImapError::Closed
            });
        }
        let line = &buf[start..buf.len() - 1];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(len) = literal_length(line) else {
            return Ok(buf);
        };
        if buf.len() + len > MAX_RESPONSE {
            return Err(ImapError::TooLarge(MAX_RESPONSE));
        }
        let old = buf.len();
        buf.resize(old + len, 0);
        stream.read_exact(&mut buf[old..]).await?;
    }
}

async fn handshake(
    stream: Box<dyn Io>,
    host: &str,
    connector: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Box<dyn Io>, ImapError> {
    let connector = connector
        .ok_or_else(|| ImapError::Protocol("TLS asked for but not configured".to_owned()))?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ImapError::ServerName(host.to_owned()))?;
    let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| ImapError::Timeout(timeout))?
        .map_err(|source| ImapError::Handshake {
            host: host.to_owned(),
            source,
        })?;
    Ok(Box::new(tls))
}

/// `s` as an IMAP quoted string, or `None` when it needs a literal: line breaks, NUL, 8-bit
/// characters and very long strings cannot be quoted.
fn quoted(s: &str) -> Option<Vec<u8>> {
    let quotable = s.len() <= MAX_QUOTED
        && s.bytes()
            .all(|b| b.is_ascii() && !matches!(b, b'\r' | b'\n' | 0));
    if !quotable {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, DuplexStream, duplex};

    fn conn(stream: DuplexStream) -> Connection {
        let stream: Box<dyn Io> = Box::new(stream);
        Connection {
            stream: BufReader::new(stream),
            next_tag: 1,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn quotes_or_asks_for_a_literal() {
        assert_eq!(quoted("a\"b\\c").as_deref(), Some(&b"\"a\\\"b\\\\c\""[..]));
        assert_eq!(
            quoted("<--$%&@odd.example>").as_deref(),
            Some(&b"\"<--$%&@odd.example>\""[..])
        );
        assert_eq!(quoted("caf\u{e9}"), None);
        assert_eq!(quoted("a\r\nb"), None);
    }

    #[tokio::test]
    async fn sends_literals_after_the_continuation() {
        let (client, mut server) = duplex(4096);
        let mut conn = conn(client);
        let serve = async {
            let mut buf = vec![0u8; 4096];
            let n = server.read(&mut buf).await.expect("first part");
            assert_eq!(&buf[..n], b"p1 LOGIN \"u*m\" {5}\r\n");
            server.write_all(b"+ OK\r\n").await.expect("continuation");
            let n = server.read(&mut buf).await.expect("literal");
            assert_eq!(&buf[..n], "p\u{e9}ss\r\n".as_bytes());
            server
                .write_all(b"* CAPABILITY IMAP4rev1\r\np1 OK done\r\n")
                .await
                .expect("reply");
        };
        let (reply, ()) = tokio::join!(
            conn.command(&[Arg::Raw("LOGIN"), Arg::Str("u*m"), Arg::Str("p\u{e9}ss")]),
            serve
        );
        let reply = reply.expect("a reply");
        assert!(reply.is_ok());
        assert_eq!(
            reply.data,
            vec![vec![
                Value::Atom("CAPABILITY".into()),
                Value::Atom("IMAP4rev1".into())
            ]]
        );
    }

    #[tokio::test]
    async fn reads_literals_in_responses() {
        let (client, mut server) = duplex(4096);
        let mut conn = conn(client);
        server
            .write_all(b"* 1 FETCH (UID 7 BODY[HEADER] {8}\r\nA: b\r\n\r\n)\r\np1 OK\r\n")
            .await
            .expect("server write");
        let reply = conn.command(&[Arg::Raw("NOOP")]).await.expect("a reply");
        let header = Value::Bytes(b"A: b\r\n\r\n".to_vec());
        assert_eq!(reply.data.len(), 1);
        assert!(matches!(&reply.data[0][2], Value::List(items) if items.contains(&header)));
    }

    #[tokio::test]
    async fn times_out_on_a_silent_server() {
        let (client, _server) = duplex(64);
        let mut conn = conn(client);
        conn.timeout = Duration::from_millis(50);
        let result = conn.command(&[Arg::Raw("NOOP")]).await;
        assert!(matches!(result, Err(ImapError::Timeout(_))), "{result:?}");
    }

    #[tokio::test]
    async fn reports_bye_when_the_server_hangs_up() {
        let (client, mut server) = duplex(4096);
        let mut conn = conn(client);
        let serve = async move {
            let mut buf = [0u8; b"p1 NOOP\r\n".len()];
            server.read_exact(&mut buf).await.expect("the command");
            server
                .write_all(b"* BYE shutting down\r\n")
                .await
                .expect("server write");
        };
        let (result, ()) = tokio::join!(conn.command(&[Arg::Raw("NOOP")]), serve);
        assert!(
            matches!(&result, Err(ImapError::Bye(text)) if text == "shutting down"),
            "{result:?}"
        );
    }
}
