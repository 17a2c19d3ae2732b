//! Macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` of a middleware service whose wrapped service is
/// the field `inner`, as tower's own middleware has them.
macro_rules! inner_service_accessors {
    ($service:ident) => {
        impl<S> $service<S> {
            /// The inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The inner service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Consumes the wrapper, returning the inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

pub(crate) use inner_service_accessors;
