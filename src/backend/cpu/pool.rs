//! A persistent pool of worker threads for the CPU kernels.
//!
//! A training step runs hundreds to thousands of kernels, most of them a millisecond or less;
//! starting and joining a thread for each one (what `std::thread::scope` does) cost tens of
//! microseconds per kernel. Here `num_threads() − 1` workers are started once and wait on a
//! queue; [`join_all`] runs its first job on the calling thread and queues the rest, then waits
//! for all of them before it returns, so jobs may borrow from the caller's stack exactly as
//! with scoped threads. A panic in any job is re-raised on the caller after every job ended.
//!
//! Jobs run marked as workers (see [`super::as_worker`]), so kernels they call stay on their
//! thread, and with their caller's kernel choice (see [`super::use_kernels`]). `join_all`
//! itself runs everything inline when called from inside a job: a pool worker therefore never
//! waits for the queue, which is what keeps the pool free of deadlock.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

type Task = Box<dyn FnOnce() + Send + 'static>;

struct Queue {
    tasks: Mutex<VecDeque<Task>>,
    ready: Condvar,
}

/// The started workers' queue (None when there is only one thread: nothing to share).
fn queue() -> Option<&'static Arc<Queue>> {
    static Q: OnceLock<Option<Arc<Queue>>> = OnceLock::new();
    Q.get_or_init(|| {
        let workers = super::num_threads().saturating_sub(1);
        if workers == 0 {
            return None;
        }
        let q = Arc::new(Queue {
            tasks: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        for i in 0..workers {
            let q = q.clone();
            let started = std::thread::Builder::new()
                .name(format!("brainsynth-cpu-{i}"))
                .spawn(move || worker(&q));
            if started.is_err() {
                // without workers every job still runs: on the calling thread
                return None;
            }
        }
        Some(q)
    })
    .as_ref()
}

fn worker(q: &Queue) {
    loop {
        let task = {
            let mut t = q.tasks.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(task) = t.pop_front() {
                    break task;
                }
                t = q.ready.wait(t).unwrap_or_else(|e| e.into_inner());
            }
        };
        // tasks catch their own panics (see join_all), so the worker survives them
        super::as_worker(task);
    }
}

/// Counts a group's unfinished jobs; the caller waits for zero.
struct Pending {
    left: Mutex<usize>,
    done: Condvar,
}

impl Pending {
    fn finish_one(&self) {
        let mut n = self.left.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            self.done.notify_all();
        }
    }
    fn wait(&self) {
        let mut n = self.left.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            n = self.done.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Run every job, the first on this thread and the others on the pool's workers; their
/// results in order. Returns only after all jobs have finished (also when one panicked: the
/// first panic is then re-raised here).
pub fn join_all<'a, R: Send + 'a>(jobs: Vec<Box<dyn FnOnce() -> R + Send + 'a>>) -> Vec<R> {
    let queue = match queue() {
        Some(q) if jobs.len() > 1 && !super::in_worker() => q,
        _ => return jobs.into_iter().map(|j| super::as_worker(j)).collect(),
    };
    let n = jobs.len();
    // a worker runs jobs for any caller: each job takes its own caller's kernel choice along
    let kernels = super::kernels();
    let slots: Vec<Mutex<Option<std::thread::Result<R>>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let pending = Arc::new(Pending {
        left: Mutex::new(n - 1),
        done: Condvar::new(),
    });
    let mut jobs = jobs.into_iter();
    let first = jobs.next();
    {
        let mut tasks = queue.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for (i, job) in jobs.enumerate() {
            let slot = &slots[i + 1];
            let pending = pending.clone();
            let task: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
                let r = catch_unwind(AssertUnwindSafe(|| super::with_kernels(kernels, job)));
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                pending.finish_one();
            });
            // SAFETY: the task borrows `slots` and whatever the job borrows (lifetime 'a);
            // this function does not return or unwind before `pending.wait()` below has seen
            // every task finish, so those borrows outlive every use.
            let task: Task =
                unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Task>(task) };
            tasks.push_back(task);
        }
    }
    queue.ready.notify_all();
    if let Some(job) = first {
        let r = catch_unwind(AssertUnwindSafe(|| super::as_worker(job)));
        *slots[0].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }
    pending.wait();
    let mut out = Vec::with_capacity(n);
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(r)) => out.push(r),
            Some(Err(p)) => resume_unwind(p),
            None => unreachable!("every job stored its result before pending reached zero"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_job_once_in_order_with_borrows() {
        let data: Vec<u64> = (0..1000).collect();
        let chunks: Vec<&[u64]> = data.chunks(100).collect();
        let jobs: Vec<Box<dyn FnOnce() -> u64 + Send + '_>> = chunks
            .iter()
            .map(|c| Box::new(move || c.iter().sum::<u64>()) as Box<dyn FnOnce() -> u64 + Send>)
            .collect();
        let sums = join_all(jobs);
        assert_eq!(sums.len(), 10);
        assert_eq!(sums.iter().sum::<u64>(), 999 * 1000 / 2);
        assert_eq!(sums[3], (300..400).sum::<u64>());
    }

    #[test]
    fn a_panicking_job_is_reraised_after_the_others_finished() {
        let done = std::sync::atomic::AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let jobs: Vec<Box<dyn FnOnce() + Send + '_>> = (0..6)
                .map(|i| {
                    let done = &done;
                    Box::new(move || {
                        if i == 2 {
                            panic!("job 2 fails");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }) as Box<dyn FnOnce() + Send>
                })
                .collect();
            join_all(jobs);
        }));
        assert!(r.is_err());
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 5);
        // the pool still works afterwards
        let v = join_all(vec![
            Box::new(|| 1) as Box<dyn FnOnce() -> i32 + Send>,
            Box::new(|| 2),
        ]);
        assert_eq!(v, vec![1, 2]);
    }

    #[test]
    fn jobs_on_workers_use_their_callers_kernel_choice() {
        use super::super::{CpuKernels, kernels, with_kernels, with_reference};
        let seen = |n: usize| {
            join_all(
                (0..n)
                    .map(|_| {
                        Box::new(|| {
                            // long enough that the workers, not only the caller, take jobs
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            kernels()
                        }) as Box<dyn FnOnce() -> CpuKernels + Send>
                    })
                    .collect(),
            )
        };
        std::thread::scope(|s| {
            let a = s.spawn(|| with_reference(|| seen(16)));
            let b = s.spawn(|| with_kernels(CpuKernels::Fast, || seen(16)));
            let (a, b) = (a.join().unwrap(), b.join().unwrap());
            assert!(a.iter().all(|&k| k == CpuKernels::Reference), "{a:?}");
            assert!(b.iter().all(|&k| k == CpuKernels::Fast), "{b:?}");
        });
        // the choice ends with its scope, on the caller and on the workers
        assert_eq!(with_reference(kernels), CpuKernels::Reference);
        assert_eq!(kernels(), CpuKernels::Fast);
        assert!(seen(8).iter().all(|&k| k == CpuKernels::Fast));
        let r = catch_unwind(|| with_reference(|| panic!("fails inside the scope")));
        assert!(r.is_err());
        assert_eq!(kernels(), CpuKernels::Fast);
    }

    #[test]
    fn concurrent_callers_and_nested_calls_do_not_deadlock() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for _ in 0..50 {
                        let jobs: Vec<Box<dyn FnOnce() -> usize + Send>> = (0..3)
                            .map(|i| {
                                Box::new(move || {
                                    // nested: runs inline inside a job
                                    let inner: Vec<Box<dyn FnOnce() -> usize + Send>> =
                                        vec![Box::new(move || i), Box::new(move || t)];
                                    join_all(inner).iter().sum::<usize>()
                                })
                                    as Box<dyn FnOnce() -> usize + Send>
                            })
                            .collect();
                        assert_eq!(join_all(jobs), vec![t, 1 + t, 2 + t]);
                    }
                });
            }
        });
    }
}
