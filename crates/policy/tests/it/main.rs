//! Behaviour tests for warrant-policy, in one binary to keep link times down.
//! (`cfg(test)` marks the helpers as test code for the workspace lints.)

#[cfg(test)]
mod builtin_actions;
#[cfg(test)]
mod compile;
#[cfg(test)]
mod decide;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tier;
