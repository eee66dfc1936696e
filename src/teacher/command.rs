//! `tutor-chat teacher add|promote|remove NAME`: how a course gets its teacher. `add`
//! creates the account; it does not promote a student's account of that name (a
//! student may have signed up with the teacher's name first): `promote` does, when the
//! operator knows the account is the teacher's own. The password is read from standard
//! input when something is piped in, and replaces an existing account's (signing out
//! its sessions); creating an account with nothing piped in generates one and prints
//! it, once. `remove` makes the teacher a student again; the account and its
//! conversations stay.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use super::store::TeacherAdded;
use crate::account::hashing::PasswordHashing;
use crate::account::{valid_username, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::db::{database_url, Db};
use crate::settings::Settings;

const USAGE: &str = "usage: tutor-chat teacher add NAME       (password on standard input, or one is generated)\n       tutor-chat teacher promote NAME   (an existing student's account)\n       tutor-chat teacher remove NAME";

pub async fn run_teacher_command(settings: &Settings, args: &[String]) -> ExitCode {
    let (action, name) = match args {
        [action, name] if ["add", "promote", "remove"].contains(&action.as_str()) => (action.as_str(), name.trim()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !valid_username(name) {
        eprintln!("tutor-chat teacher: {name:?} is not a username (3 to 32 letters, digits, '.', '-', '_')");
        return ExitCode::from(2);
    }
    match run(settings, action, name).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tutor-chat teacher: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings, action: &str, name: &str) -> Result<(), String> {
    let url = database_url(settings.database_url.as_deref(), &settings.data_dir);
    let db = Db::connect(&url, 1).await.map_err(|e| e.to_string())?;
    if action == "remove" {
        return match db.remove_teacher(name).await.map_err(|e| e.to_string())? {
            true => {
                println!("{name} is a student now (the account and its conversations stay)");
                Ok(())
            }
            false => Err(format!("no teacher is called {name}")),
        };
    }
    let piped = piped_password()?;
    let exists = db.account_by_name(name).await.map_err(|e| e.to_string())?.is_some();
    let generated = match (&piped, exists, action) {
        (None, false, "add") => Some(crate::digest::random_hex::<10>().map_err(|e| e.to_string())?),
        _ => None,
    };
    let password = piped.or_else(|| generated.clone());
    let hash = match password {
        Some(password) => Some(PasswordHashing::new(0).hash(password).await.map_err(|e| e.to_string())?),
        None => None,
    };
    let replaced = "; its password is replaced and its sessions are signed out";
    match db.add_teacher(name, hash.as_deref(), action == "promote").await.map_err(|e| e.to_string())? {
        Some(TeacherAdded::Created) => println!("created the teacher account {name}"),
        Some(TeacherAdded::Promoted { password_replaced }) => {
            println!("{name} is a teacher now{}", if password_replaced { replaced } else { "" })
        }
        Some(TeacherAdded::AlreadyTeacher { password_replaced }) => {
            println!("{name} is a teacher already{}", if password_replaced { replaced } else { "" })
        }
        Some(TeacherAdded::ExistsAsStudent) => {
            return Err(format!(
                "a student's account is called {name}: if it is the teacher's own, run `tutor-chat teacher promote {name}`; \
                 if not, someone took the name first, so choose another"
            ))
        }
        None if action == "promote" => return Err(format!("no account is called {name}")),
        None => return Err(format!("no account is called {name}, and no password was given")),
    }
    if let Some(password) = generated {
        println!("password for {name} (shown this once): {password}");
    }
    Ok(())
}

/// The password piped to the command, if any (a terminal is never read from).
fn piped_password() -> Result<Option<String>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut text = String::new();
    stdin.lock().take(4096).read_to_string(&mut text).map_err(|e| format!("cannot read the password: {e}"))?;
    let password = text.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Ok(None);
    }
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(format!("a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"));
    }
    Ok(Some(password))
}
