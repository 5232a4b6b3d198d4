//! `connector._native`: the PyO3 binding of pmx-transcoder (typed in `connector/_native.pyi`,
//! wrapped by `connector/core/transcoder.py`, which builds the plan; use that module, not this one).
//!
//! Per record it creates only what the engine consumes: one tuple, the value `bytes`, the key
//! `bytes`, and for an execution its id `str` and transact time `int`.

use pmx_transcoder::{Context, EventType, Failure, Kind, Plan, Sink, Source};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

create_exception!(
    _native,
    DecodeError,
    PyValueError,
    "Bytes that are not a valid protobuf encoding of the expected venue message."
);

/// The transcoder: one per plan, framing and connector name.
#[pyclass(frozen, module = "connector._native")]
struct Transcoder {
    inner: pmx_transcoder::Transcoder,
    /// The objects returned as the response kind: none, heartbeat, snapshot, update.
    kinds: [Py<PyAny>; 4],
    /// The objects that stand for the sources stream, snapshot, backfill, drop copy (compared by identity).
    sources: [Py<PyAny>; 4],
    /// `tuple.__new__` and the named tuple class of a response.
    tuple_new: Py<PyAny>,
    response_class: Py<PyAny>,
    /// The class of a dead letter, called with its six fields.
    dead_letter_class: Py<PyAny>,
}

impl Transcoder {
    fn source_of(&self, source: Option<&Bound<'_, PyAny>>) -> PyResult<Source> {
        let Some(source) = source else { return Ok(Source::Stream) };
        let found = [Source::Stream, Source::Snapshot, Source::Backfill, Source::DropCopy]
            .into_iter()
            .zip(&self.sources)
            .find(|(_, known)| source.is(known.bind(source.py())));
        match found {
            Some((source, _)) => Ok(source),
            None => Err(PyValueError::new_err(format!("not a source: {source}"))),
        }
    }
}

/// Collects records as Python objects.
struct PySink<'py> {
    py: Python<'py>,
    dead_letter_class: Bound<'py, PyAny>,
    executions: Bound<'py, PyList>,
    orders: Bound<'py, PyList>,
    cancel_reject: Option<Bound<'py, PyTuple>>,
    dead_letters: Bound<'py, PyList>,
    error: Option<PyErr>,
}

impl<'py> PySink<'py> {
    fn new(py: Python<'py>, dead_letter_class: Bound<'py, PyAny>) -> Self {
        PySink {
            py,
            dead_letter_class,
            executions: PyList::empty(py),
            orders: PyList::empty(py),
            cancel_reject: None,
            dead_letters: PyList::empty(py),
            error: None,
        }
    }

    fn keep(&mut self, result: PyResult<()>) {
        if let Err(error) = result {
            self.error.get_or_insert(error);
        }
    }

    fn optional(&self, value: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
        Ok(value.into_pyobject(self.py)?.into_any())
    }

    fn reason(&self, failure: &Failure) -> PyResult<String> {
        let repr = |text: &str| -> PyResult<String> {
            Ok(PyString::new(self.py, text).repr()?.to_str()?.to_owned())
        };
        Ok(match failure {
            Failure::ExecutionWithoutId { order_id } => {
                format!("execution without an id (order_id={})", repr(order_id)?)
            }
            Failure::ExecutionWithoutOrderId { execution_id } => {
                format!("execution {} has no order id", repr(execution_id)?)
            }
            Failure::SnapshotOrderWithoutId { position } => {
                format!("snapshot order at position {position} has no id")
            }
            Failure::CancelRejectWithoutOrderId { clord_id } => {
                format!("cancel reject without an order id (clord_id={})", repr(clord_id)?)
            }
            Failure::TimestampOutOfRange { field, seconds } => {
                format!("{field} {seconds}s is outside the range of timestamp-nanos (years 1677..2262)")
            }
        })
    }
}

impl Sink for PySink<'_> {
    fn execution(&mut self, execution_id: &str, key: &[u8], transact_time: Option<i64>, value: &[u8]) {
        let result = (|| {
            let item = PyTuple::new(
                self.py,
                [
                    PyString::new(self.py, execution_id).into_any(),
                    PyBytes::new(self.py, key).into_any(),
                    self.optional(transact_time)?,
                    PyBytes::new(self.py, value).into_any(),
                ],
            )?;
            self.executions.append(item)
        })();
        self.keep(result);
    }

    fn snapshot_order(&mut self, key: &[u8], value: &[u8]) {
        let result = (|| {
            let item = PyTuple::new(self.py, [PyBytes::new(self.py, key), PyBytes::new(self.py, value)])?;
            self.orders.append(item)
        })();
        self.keep(result);
    }

    fn cancel_reject(&mut self, key: &[u8], transact_time: Option<i64>, value: &[u8]) {
        let result = (|| {
            let item = PyTuple::new(
                self.py,
                [
                    PyBytes::new(self.py, key).into_any(),
                    self.optional(transact_time)?,
                    PyBytes::new(self.py, value).into_any(),
                ],
            )?;
            self.cancel_reject = Some(item);
            Ok(())
        })();
        self.keep(result);
    }

    fn dead_letter(&mut self, event: EventType, position: usize, raw: &[u8], key: &[u8], failure: Failure) {
        let result = (|| {
            let fields = PyTuple::new(
                self.py,
                [
                    PyString::new(self.py, event.name()).into_any(),
                    position.into_pyobject(self.py)?.into_any(),
                    PyBytes::new(self.py, raw).into_any(),
                    PyBytes::new(self.py, key).into_any(),
                    PyString::new(self.py, "MappingError").into_any(),
                    PyString::new(self.py, &self.reason(&failure)?).into_any(),
                ],
            )?;
            self.dead_letters.append(self.dead_letter_class.call1(fields)?)
        })();
        self.keep(result);
    }
}

#[pymethods]
impl Transcoder {
    /// `plan`: the JSON plan; `prefixes`: framing of ExecutionEvent, OrderSnapshotEvent and
    /// CancelRejectEvent; `kinds`: the objects to return as the kind none, heartbeat, snapshot,
    /// update; `sources`: the objects that stand for stream, snapshot, backfill, drop copy;
    /// `response_class`: a named tuple of the nine response fields; `dead_letter_class`: called with
    /// six fields.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        plan: &str,
        prefixes: (Vec<u8>, Vec<u8>, Vec<u8>),
        connector: String,
        kinds: (Py<PyAny>, Py<PyAny>, Py<PyAny>, Py<PyAny>),
        sources: (Py<PyAny>, Py<PyAny>, Py<PyAny>, Py<PyAny>),
        response_class: Py<PyAny>,
        dead_letter_class: Py<PyAny>,
    ) -> PyResult<Self> {
        let plan =
            Plan::from_json(plan).map_err(|e| PyValueError::new_err(format!("transcoder plan: {e}")))?;
        Ok(Transcoder {
            inner: pmx_transcoder::Transcoder::new(plan, [prefixes.0, prefixes.1, prefixes.2], connector),
            kinds: [kinds.0, kinds.1, kinds.2, kinds.3],
            sources: [sources.0, sources.1, sources.2, sources.3],
            tuple_new: py.get_type::<PyTuple>().getattr("__new__")?.unbind(),
            response_class,
            dead_letter_class,
        })
    }

    /// One `CreateOrderSubscriptionResponse`, as `response_class` (kind, session_id,
    /// processed_sent_time_ns, executions, snapshot_id, snapshot_size, snapshot_orders,
    /// cancel_reject, dead_letters).
    #[pyo3(signature = (data, received_time_ns, source = None))]
    fn response<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        received_time_ns: i64,
        source: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let source = self.source_of(source)?;
        let mut sink = PySink::new(py, self.dead_letter_class.bind(py).clone());
        let summary = self
            .inner
            .response(data, received_time_ns, source, &mut sink)
            .map_err(|e| DecodeError::new_err(e.0))?;
        if let Some(error) = sink.error.take() {
            return Err(error);
        }
        let kind = match summary.kind {
            Kind::None => &self.kinds[0],
            Kind::Heartbeat => &self.kinds[1],
            Kind::Snapshot => &self.kinds[2],
            Kind::Update => &self.kinds[3],
        };
        let snapshot_id = if summary.kind == Kind::Snapshot {
            PyString::new(py, &summary.snapshot_id).into_any()
        } else {
            py.None().into_bound(py)
        };
        let cancel_reject = match sink.cancel_reject {
            Some(item) => item.into_any(),
            None => py.None().into_bound(py),
        };
        let fields = PyTuple::new(
            py,
            [
                kind.bind(py).clone(),
                PyString::new(py, summary.session_id).into_any(),
                summary.processed_sent_time.into_pyobject(py)?.into_any(),
                sink.executions.into_any(),
                snapshot_id,
                summary.snapshot_size.into_pyobject(py)?.into_any(),
                sink.orders.into_any(),
                cancel_reject,
                sink.dead_letters.into_any(),
            ],
        )?;
        // tuple.__new__(cls, fields): the named tuple without a Python-level constructor call.
        self.tuple_new.bind(py).call1((self.response_class.bind(py), fields))
    }

    /// One `Execution`: (execution_id, key, transact_time_ns, value), or its dead letter (a
    /// `dead_letter_class`) when it cannot be mapped.
    fn execution<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        source: &Bound<'py, PyAny>,
        session_id: &str,
        processed_sent_time_ns: Option<i64>,
        received_time_ns: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let context = Context {
            source: self.source_of(Some(source))?,
            session_id,
            processed_sent_time: processed_sent_time_ns,
            received_time: received_time_ns,
        };
        let mut sink = PySink::new(py, self.dead_letter_class.bind(py).clone());
        self.inner.execution(data, &context, &mut sink).map_err(|e| DecodeError::new_err(e.0))?;
        if let Some(error) = sink.error.take() {
            return Err(error);
        }
        let found = if sink.executions.is_empty() { sink.dead_letters } else { sink.executions };
        found.get_item(0)
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Transcoder>()?;
    module.add("DecodeError", module.py().get_type::<DecodeError>())?;
    Ok(())
}
