//! Work that runs its statements on a connection the core does not own: the caller's, in the
//! caller's transaction (a node-postgres client, a Prisma interactive transaction).
//!
//! Such work is written once, as async code over [`Session`]: each statement is text with text
//! parameters (each cast in the SQL to its type, so that any driver binds them alike) and
//! answers with the first column of its rows as text. The pool runs it on a tokio-postgres
//! client; [`Steps`] runs it sans IO, handing out one statement at a time for the caller to run
//! and taking back its answer, so that the rules stay here and the caller only carries SQL.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio_postgres::types::Type;

use crate::error::{from_query, from_server, ConnectionError, Error, Result};

/// One statement: SQL whose `$n` parameters are cast to their types in the text, and their
/// values as text (`None`: SQL null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    pub values: Vec<Option<String>>,
}

impl Statement {
    pub fn new(text: impl Into<String>, values: Vec<Option<String>>) -> Statement {
        Statement {
            text: text.into(),
            values,
        }
    }

    /// A statement without parameters.
    pub fn bare(text: impl Into<String>) -> Statement {
        Statement::new(text, Vec::new())
    }
}

/// The first column of each row, as text.
pub type Rows = Vec<Option<String>>;

/// Why a statement failed.
#[derive(Debug)]
pub enum Failure {
    /// The server refused it: its SQLSTATE, message and hint.
    Server {
        code: String,
        message: String,
        hint: Option<String>,
        source: Option<tokio_postgres::Error>,
    },
    /// Anything else (a connection lost, a driver's own complaint), already an [`Error`].
    Other(Error),
}

impl Failure {
    /// The SQLSTATE, when the server refused the statement.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Failure::Server { code, .. } => Some(code),
            Failure::Other(_) => None,
        }
    }

    /// The error to return; `table` names the table the statement was about.
    pub fn into_error(self, table: Option<&str>) -> Error {
        match self {
            Failure::Server {
                code,
                message,
                hint,
                source,
            } => match from_server(&code, &message, hint.as_deref(), table) {
                Error::Database { source: None, .. } => Error::Database {
                    code,
                    message,
                    hint,
                    source,
                },
                mapped => mapped,
            },
            Failure::Other(error) => error,
        }
    }

    /// A failure as another driver reports it: its SQLSTATE when the server sent one, else
    /// whether the connection is lost.
    pub fn reported(
        sqlstate: Option<String>,
        message: String,
        hint: Option<String>,
        lost: bool,
    ) -> Failure {
        match sqlstate {
            Some(code) => Failure::Server {
                code,
                message,
                hint,
                source: None,
            },
            None if lost => Failure::Other(
                ConnectionError::Lost {
                    reason: message,
                    source: None,
                }
                .into(),
            ),
            None => Failure::Other(Error::Internal {
                reason: format!("the client failed to run a statement: {message}"),
                source: None,
            }),
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            Some(db) => Failure::Server {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                hint: db.hint().map(str::to_owned),
                source: Some(e),
            },
            None => Failure::Other(from_query(e, None)),
        }
    }
}

/// A connection in a transaction, as work written once for any driver sees it.
pub trait Session: Sync {
    /// Runs `statement`; resolves to the first column of its rows, as text.
    fn rows(
        &self,
        statement: Statement,
    ) -> impl Future<Output = std::result::Result<Rows, Failure>> + Send;
}

impl Session for tokio_postgres::Client {
    async fn rows(&self, statement: Statement) -> std::result::Result<Rows, Failure> {
        let params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = statement
            .values
            .iter()
            .map(|value| {
                (
                    value as &(dyn tokio_postgres::types::ToSql + Sync),
                    Type::TEXT,
                )
            })
            .collect();
        let rows = self.query_typed(&statement.text, &params).await?;
        rows.iter()
            .map(|row| row.try_get::<_, Option<String>>(0))
            .collect::<std::result::Result<Rows, _>>()
            .map_err(Failure::from)
    }
}

/// What [`Steps`] asks for next.
#[derive(Debug)]
pub enum Step<T> {
    /// Run this statement on the connection, and pass its answer to [`Steps::resume`].
    Run(Statement),
    /// The work is over.
    Done(Result<T>),
}

/// Work over a [`Session`], driven one statement at a time by whoever holds the connection:
/// `resume(None)` first, then `resume(Some(answer))` with each statement's answer, until
/// [`Step::Done`]. The work awaits nothing but its statements, so each `resume` runs it up to
/// its next statement, synchronously.
pub struct Steps<T> {
    work: Option<Pin<Box<dyn Future<Output = Result<T>> + Send>>>,
    exchange: Arc<Mutex<Exchange>>,
}

#[derive(Default)]
struct Exchange {
    asked: Option<Statement>,
    answer: Option<std::result::Result<Rows, Failure>>,
}

impl<T> Steps<T> {
    /// `work` given the session it is to run its statements on.
    pub fn new<W, F>(work: W) -> Steps<T>
    where
        W: FnOnce(Asked) -> F,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let exchange = Arc::new(Mutex::new(Exchange::default()));
        Steps {
            work: Some(Box::pin(work(Asked(exchange.clone())))),
            exchange,
        }
    }

    /// Runs the work up to its next statement, `answer` being the last statement's.
    pub fn resume(&mut self, answer: Option<std::result::Result<Rows, Failure>>) -> Step<T> {
        let Some(work) = self.work.as_mut() else {
            return Step::Done(Err(internal("the work is already done")));
        };
        if let Some(answer) = answer {
            self.exchange.lock().expect("exchange lock").answer = Some(answer);
        }
        match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => {
                self.work = None;
                Step::Done(result)
            }
            Poll::Pending => match self.exchange.lock().expect("exchange lock").asked.take() {
                Some(statement) => Step::Run(statement),
                None => {
                    self.work = None;
                    Step::Done(Err(internal("resumed without the answer to its statement")))
                }
            },
        }
    }
}

fn internal(reason: &str) -> Error {
    Error::Internal {
        reason: reason.to_owned(),
        source: None,
    }
}

/// The [`Session`] of [`Steps`]: a statement is handed out, and its answer waited for.
pub struct Asked(Arc<Mutex<Exchange>>);

impl Session for Asked {
    fn rows(
        &self,
        statement: Statement,
    ) -> impl Future<Output = std::result::Result<Rows, Failure>> + Send {
        Answer {
            exchange: self.0.clone(),
            statement: Some(statement),
        }
    }
}

struct Answer {
    exchange: Arc<Mutex<Exchange>>,
    statement: Option<Statement>,
}

impl Future for Answer {
    type Output = std::result::Result<Rows, Failure>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut exchange = this.exchange.lock().expect("exchange lock");
        if let Some(statement) = this.statement.take() {
            exchange.asked = Some(statement);
            exchange.answer = None;
            return Poll::Pending;
        }
        match exchange.answer.take() {
            Some(answer) => Poll::Ready(answer),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hand_out_each_statement_and_resume_with_its_answer() {
        let mut steps = Steps::new(|session: Asked| async move {
            let first = session
                .rows(Statement::bare("select 1::text"))
                .await
                .map_err(|f| f.into_error(None))?;
            let second = session
                .rows(Statement::new("select $1::text", vec![first[0].clone()]))
                .await
                .map_err(|f| f.into_error(None))?;
            Ok(second)
        });
        let Step::Run(first) = steps.resume(None) else {
            panic!("a statement first")
        };
        assert_eq!(first.text, "select 1::text");
        let Step::Run(second) = steps.resume(Some(Ok(vec![Some("1".into())]))) else {
            panic!("a second statement")
        };
        assert_eq!(second.values, vec![Some("1".to_owned())]);
        match steps.resume(Some(Ok(vec![Some("one".into())]))) {
            Step::Done(Ok(rows)) => assert_eq!(rows, vec![Some("one".to_owned())]),
            other => panic!("done, got {other:?}"),
        }
        assert!(matches!(
            steps.resume(None),
            Step::Done(Err(Error::Internal { .. }))
        ));
    }

    #[test]
    fn a_failure_reaches_the_work_as_its_error_and_a_missing_answer_ends_it() {
        let mut steps = Steps::new(|session: Asked| async move {
            session
                .rows(Statement::bare("insert"))
                .await
                .map_err(|f| f.into_error(Some("public.t")))
        });
        assert!(matches!(steps.resume(None), Step::Run(_)));
        let refused = Failure::reported(Some("23505".into()), "duplicate key".into(), None, false);
        match steps.resume(Some(Err(refused))) {
            Step::Done(Err(e)) => assert_eq!(e.fields().sqlstate.as_deref(), Some("23505")),
            other => panic!("the server's error, got {other:?}"),
        }
        let mut steps = Steps::new(|session: Asked| async move {
            session
                .rows(Statement::bare("select"))
                .await
                .map_err(|f| f.into_error(None))
        });
        assert!(matches!(steps.resume(None), Step::Run(_)));
        assert!(matches!(
            steps.resume(None),
            Step::Done(Err(Error::Internal { .. }))
        ));
    }
}
