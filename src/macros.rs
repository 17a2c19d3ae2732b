//! Macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` of a middleware service whose wrapped service is
/// the field `inner`, as tower's own middleware has them. `$layer` is the expression (in
/// the doc examples, with a `guard: TenantGuard` on the memory backend in scope) that
/// builds the layer making `$service`.
macro_rules! inner_service_accessors {
    ($service:ident, $layer:literal) => {
        impl<S> $service<S> {
            /// The inner service.
            ///
            /// ```
            #[doc = crate::macros::accessor_example_setup!($layer)]
            /// assert_eq!(svc.get_ref().0, 7);
            /// # Ok(()) }
            /// ```
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The inner service, mutably.
            ///
            /// ```
            #[doc = crate::macros::accessor_example_setup!($layer)]
            /// svc.get_mut().0 = 8;
            /// assert_eq!(svc.get_ref().0, 8);
            /// # Ok(()) }
            /// ```
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Consumes the wrapper, returning the inner service.
            ///
            /// ```
            #[doc = crate::macros::accessor_example_setup!($layer)]
            /// let inner: Inner = svc.into_inner();
            /// assert_eq!(inner.0, 7);
            /// # Ok(()) }
            /// ```
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

/// The first lines of an accessor's doc example: a memory-backed `guard`, an `Inner`
/// service holding a number, and `svc` (mutable), the layer `$layer` wrapped around it.
macro_rules! accessor_example_setup {
    ($layer:literal) => {
        concat!(
            "# fn main() -> Result<(), Box<dyn std::error::Error>> {\n",
            "use tower::Layer;\n",
            "# let guard = tenant_guard::TenantGuard::from_vars([(\"REDIS_ENABLED\", \"false\"), ",
            "(\"SESSION_SECRET\", \"0123456789abcdef0123456789abcdef\")])?;\n",
            "#[derive(Clone)]\n",
            "struct Inner(u32); // any service; here a number to look at\n",
            "let layer = ",
            $layer,
            ";\n",
            "#[allow(unused_mut)]\n",
            "let mut svc = layer.layer(Inner(7));\n",
        )
    };
}

pub(crate) use accessor_example_setup;
pub(crate) use inner_service_accessors;
