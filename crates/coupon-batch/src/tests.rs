use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const SETTINGS: Settings = Settings { max_batch: 64, queue: 256, idle: Some(Duration::from_millis(50)) };

/// Doubles each item, recording every batch's size and the thread its driver ran on.
#[derive(Default)]
struct Log {
    sizes: Mutex<Vec<usize>>,
    threads: Mutex<Vec<ThreadId>>,
    started: AtomicUsize,
}

fn doubler(
    settings: Settings,
    per_thread: bool,
    log: &Arc<Log>,
) -> Batches<u8, Call<u32, Result<u32, String>>> {
    let log = log.clone();
    let start = move |_key: u8, mut intake: Intake<Call<u32, Result<u32, String>>>| {
        log.started.fetch_add(1, Ordering::SeqCst);
        let log = log.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while intake.next(&mut batch).await {
                log.sizes.lock().unwrap_or_else(PoisonError::into_inner).push(batch.len());
                log.threads.lock().unwrap_or_else(PoisonError::into_inner).push(std::thread::current().id());
                tokio::task::yield_now().await;
                let answers = batch.iter().map(|call| call.item * 2).collect();
                Call::settle(std::mem::take(&mut batch), Ok(answers), |_, _| "miscount".to_owned());
            }
        });
    };
    if per_thread { Batches::per_thread(settings, start) } else { Batches::shared(settings, start) }
}

async fn ask(batches: &Batches<u8, Call<u32, Result<u32, String>>>, key: u8, n: u32) -> Option<u32> {
    let (call, answer) = Call::new(n);
    batches.submit(key, call).await.ok()?;
    answer.await.ok()?.ok()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn sizes(log: &Log) -> Vec<usize> {
    log.sizes.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

#[test]
fn calls_made_together_are_one_batch_and_each_gets_its_own_answer() {
    let log = Arc::new(Log::default());
    let batches = doubler(SETTINGS, true, &log);
    let answers = current_thread().block_on(async {
        let (a, b, c, d) =
            tokio::join!(ask(&batches, 0, 1), ask(&batches, 0, 2), ask(&batches, 0, 3), ask(&batches, 0, 4));
        [a, b, c, d]
    });
    assert_eq!(answers, [2, 4, 6, 8].map(Some));
    assert_eq!(sizes(&log), [4]);
}

#[test]
fn a_batch_never_exceeds_its_maximum() {
    let log = Arc::new(Log::default());
    let batches = doubler(Settings { max_batch: 3, ..SETTINGS }, true, &log);
    let answers = current_thread().block_on(async {
        let ask = |n| ask(&batches, 0, n);
        let (a, b, c, d, e, f, g) = tokio::join!(ask(0), ask(1), ask(2), ask(3), ask(4), ask(5), ask(6));
        [a, b, c, d, e, f, g]
    });
    assert_eq!(answers, [0, 2, 4, 6, 8, 10, 12].map(Some));
    assert_eq!(sizes(&log), [3, 3, 1]);
}

#[test]
fn a_failed_batch_answers_every_caller_with_its_failure() {
    let mut calls = Vec::new();
    let mut answers = Vec::new();
    for n in 0..3 {
        let (call, answer) = Call::<u32, Result<u32, String>>::new(n);
        calls.push(call);
        answers.push(answer);
    }
    let (short, short_answer) = Call::<u32, Result<u32, String>>::new(9);
    Call::settle(calls, Err("redis down".to_owned()), |_, _| "miscount".to_owned());
    Call::settle(vec![short], Ok(vec![1, 2]), |got, calls| format!("{got} answers for {calls} calls"));
    current_thread().block_on(async {
        for answer in answers {
            assert_eq!(answer.await.ok(), Some(Err("redis down".to_owned())));
        }
        assert_eq!(short_answer.await.ok(), Some(Err("2 answers for 1 calls".to_owned())));
    });
}

#[test]
fn an_answer_whose_caller_left_is_handed_back_and_a_gone_caller_is_seen() {
    let (kept, kept_answer) = Call::<u32, Result<u32, String>>::new(1);
    let (left, left_answer) = Call::<u32, Result<u32, String>>::new(2);
    drop(left_answer);
    assert!(left.gone() && !kept.gone());
    let unclaimed = Call::settle(vec![kept, left], Ok(vec![10, 20]), |_, _| "miscount".to_owned());
    assert_eq!(unclaimed, [(2, 20)]);
    assert_eq!(current_thread().block_on(kept_answer).ok(), Some(Ok(10)));
}

#[test]
fn an_idle_driver_stops_and_the_next_call_starts_another() {
    let log = Arc::new(Log::default());
    let batches = doubler(SETTINGS, false, &log);
    current_thread().block_on(async {
        assert_eq!(ask(&batches, 0, 1).await, Some(2));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(ask(&batches, 0, 2).await, Some(4));
    });
    assert_eq!(log.started.load(Ordering::SeqCst), 2, "the first driver stopped when idle");
    assert_eq!(batches.queues(), 1, "the stopped driver's queue was dropped");
}

#[test]
fn a_driver_that_stopped_with_its_runtime_is_replaced() {
    let log = Arc::new(Log::default());
    let batches = doubler(Settings { idle: None, ..SETTINGS }, false, &log);
    let first = current_thread();
    assert_eq!(first.block_on(ask(&batches, 0, 1)), Some(2));
    drop(first);
    assert_eq!(current_thread().block_on(ask(&batches, 0, 2)), Some(4));
    assert_eq!(log.started.load(Ordering::SeqCst), 2);
}

#[test]
fn per_thread_drivers_run_on_their_callers_thread_and_shared_ones_do_not_multiply() {
    for per_thread in [true, false] {
        let log = Arc::new(Log::default());
        let batches = doubler(Settings { idle: None, ..SETTINGS }, per_thread, &log);
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
        );
        let callers: Vec<ThreadId> = (0..2)
            .map(|n| {
                let (batches, runtime) = (batches.clone(), runtime.clone());
                std::thread::spawn(move || {
                    if per_thread {
                        current_thread()
                            .block_on(async { assert_eq!(ask(&batches, 7, n).await, Some(n * 2)) });
                    } else {
                        runtime.block_on(async { assert_eq!(ask(&batches, 7, n).await, Some(n * 2)) });
                    }
                    std::thread::current().id()
                })
                .join()
                .expect("caller thread")
            })
            .collect();
        let drivers = log.threads.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if per_thread {
            assert_eq!(log.started.load(Ordering::SeqCst), 2, "one driver per thread");
            assert_eq!(drivers, callers, "each driver ran on its caller's thread");
        } else {
            assert_eq!(log.started.load(Ordering::SeqCst), 1, "one driver for the key");
        }
    }
}
