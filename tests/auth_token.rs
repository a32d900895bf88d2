//! Bearer tokens over real HTTP: the built-in token server (GET with Basic credentials, OAuth2
//! POST with password and refresh token), the registry's challenges and checks, and tokens from
//! an external issuer trusted by certificate, public key or JWKS. Every refusal the issue lists
//! has a test: expired, tampered, alg none, HMAC with the public key, other repository, other
//! service, untrusted key.
mod auth_support;
mod common;
use auth_support::*;
use common::*;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "wharf-test";
const ISSUER: &str = "wharf-issuer";

struct Issuer {
    s: Server,
    key_pem: String,
    public_pem: String,
    _dir: tempfile::TempDir,
}

/// A registry with the built-in issuer (ES256 key made here), htpasswd users, the rules.
fn start_issuer(extra_token_keys: &str, extra: &str) -> Issuer {
    start_issuer_env(extra_token_keys, extra, &[])
}

/// The same, with variables in the server's environment.
fn start_issuer_env(extra_token_keys: &str, extra: &str, env: &[(&str, &str)]) -> Issuer {
    let dir = tempfile::tempdir().unwrap();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, kp.serialize_pem()).unwrap();
    let users = dir.path().join("htpasswd");
    std::fs::write(
        &users,
        htpasswd(&[("alice", "pa"), ("bob", "pb"), ("carol", "pc"), ("admin", "px")]),
    )
    .unwrap();
    let toml = format!(
        "[storage.delete]\nenabled = true\n[auth.token]\nservice = \"{SERVICE}\"\nissuer = \"{ISSUER}\"\n\
         signingkey = {:?}\nhtpasswd = {:?}\n{extra_token_keys}\n{extra}",
        key.display().to_string(),
        users.display().to_string()
    );
    Issuer {
        s: Server::start_with(&toml, env),
        key_pem: kp.serialize_pem(),
        public_pem: kp.public_key_pem(),
        _dir: dir,
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&unb64(token.split('.').nth(i).unwrap())).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(iss: &str, aud: &str, sub: &str, access: Value, exp_in: i64) -> Value {
    let n = now() as i64;
    json!({"iss": iss, "aud": aud, "sub": sub, "exp": n + exp_in, "nbf": n - 5, "iat": n - 5,
           "jti": uuid::Uuid::new_v4().to_string(), "access": access})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn pull_push(repo: &str) -> Value {
    json!([{"type": "repository", "name": repo, "actions": ["pull", "push"]}])
}

/// GET /token with `cred` and `scopes`; returns (status, body).
async fn token_get(s: &Server, cred: &Cred, query: &str) -> (u16, Value) {
    let r = cred
        .apply(client().get(s.url(&format!("/token?{query}"))))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (
        st,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

async fn token(s: &Server, cred: &Cred, scopes: &[&str]) -> String {
    let mut q = format!("service={SERVICE}");
    for sc in scopes {
        q.push_str(&format!("&scope={sc}"));
    }
    let (st, body) = token_get(s, cred, &q).await;
    assert_eq!(st, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn granted(token: &str) -> Value {
    part(token, 1)["access"].clone()
}

async fn get_status(s: &Server, path: &str, cred: &Cred) -> (u16, String) {
    let r = cred
        .apply(client().get(s.url(path)).header("accept", OCI_MANIFEST))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), challenge(&r))
}

#[tokio::test]
async fn challenges_name_the_realm_service_and_scope() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let realm = format!("http://{}/token", s.addr);
    let (st, ch) = get_status(s, "/v2/", &Cred::None).await;
    assert_eq!(st, 401);
    assert_eq!(ch, format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\""));
    let (_, ch) = get_status(s, "/v2/team-a/app/tags/list", &Cred::None).await;
    assert_eq!(
        ch,
        format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"repository:team-a/app:pull\"")
    );
    let r = client()
        .post(s.url("/v2/team-a/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("scope=\"repository:team-a/app:pull,push\""));
    assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["UNAUTHORIZED"]);
    // a mount also asks for pull on its source, so the client's token can cover it
    let r = client()
        .post(s.url("/v2/team-a/app/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=team-a/base"))
        .send()
        .await
        .unwrap();
    assert!(
        challenge(&r).contains("scope=\"repository:team-a/app:pull,push repository:team-a/base:pull\""),
        "{}",
        challenge(&r)
    );
    // Basic credentials are not accepted by the registry in token mode: get a token
    let (st, ch) = get_status(s, "/v2/", &Cred::basic("alice", "pa")).await;
    assert_eq!((st, ch.starts_with("Bearer ")), (401, true));
}

#[tokio::test]
async fn issued_tokens_carry_the_claims_and_grant_what_they_say() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let alice = Cred::basic("alice", "pa");
    let (st, body) = token_get(
        s,
        &alice,
        &format!("service={SERVICE}&scope=repository:team-a/app:pull,push"),
    )
    .await;
    assert_eq!(st, 200);
    let t = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    let header = part(t, 0);
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
    let cl = part(t, 1);
    assert_eq!(
        (cl["iss"].as_str(), cl["sub"].as_str(), cl["aud"].as_str()),
        (Some(ISSUER), Some("alice"), Some(SERVICE))
    );
    for k in ["exp", "nbf", "iat"] {
        assert!(cl[k].as_u64().is_some(), "{k} in {cl}");
    }
    assert!(cl["exp"].as_u64().unwrap() > now());
    assert!(cl["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(cl["access"], pull_push("team-a/app"));
    let bearer = Cred::Bearer(t.to_owned());
    push_image(&c, &s.url(""), "team-a/app", "v1", &bearer, 1)
        .await
        .unwrap();
    assert_eq!(get_status(s, "/v2/team-a/app/manifests/v1", &bearer).await.0, 200);
    assert_eq!(get_status(s, "/v2/", &bearer).await.0, 200);
    // the JWKS names the key the tokens carry
    let r = c.get(s.url("/token/jwks.json")).send().await.unwrap();
    let jwks: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    // tokens never reach the log
    let logs = s.logs().join("\n");
    assert!(
        !logs.contains(t) && !logs.contains(t.split('.').nth(2).unwrap()),
        "token in log"
    );
}

#[tokio::test]
async fn the_grant_is_what_was_asked_intersected_with_the_rules() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let alice = Cred::basic("alice", "pa");
    let bob = Cred::basic("bob", "pb");
    let t = token(s, &alice, &["repository:team-a/app:pull,push"]).await;
    push_image(&c, &s.url(""), "team-a/app", "v1", &Cred::Bearer(t), 1)
        .await
        .unwrap();

    // bob asks for pull, push and delete and gets pull: a push has pull but not push
    let t = token(s, &bob, &["repository:team-a/app:pull,push,delete"]).await;
    assert_eq!(
        granted(&t),
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}])
    );
    let bearer = Cred::Bearer(t);
    assert_eq!(get_status(s, "/v2/team-a/app/manifests/v1", &bearer).await.0, 200);
    let r = bearer
        .apply(c.post(s.url("/v2/team-a/app/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).ends_with(",scope=\"repository:team-a/app:pull,push\",error=\"insufficient_scope\""));
    assert_eq!(
        push_image(&c, &s.url(""), "team-a/app", "v2", &bearer, 2).await,
        Err(401)
    );

    // carol (in no group) gets an empty grant, which is not an error
    let t = token(s, &Cred::basic("carol", "pc"), &["repository:team-a/app:pull"]).await;
    assert_eq!(
        granted(&t),
        json!([{"type": "repository", "name": "team-a/app", "actions": []}])
    );
    assert_eq!(get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(t)).await.0, 401);

    // anonymous: public pull only; two scopes in one request
    let t = token(
        s,
        &Cred::None,
        &["repository:public/tool:pull,push", "repository:team-a/app:pull"],
    )
    .await;
    assert_eq!(part(&t, 1)["sub"], "");
    assert_eq!(
        granted(&t),
        json!([{"type": "repository", "name": "public/tool", "actions": ["pull"]},
               {"type": "repository", "name": "team-a/app", "actions": []}])
    );

    // wrong password, unknown user: 401 from the token server
    assert_eq!(
        token_get(s, &Cred::basic("alice", "nope"), "service=wharf-test")
            .await
            .0,
        401
    );
    assert_eq!(
        token_get(s, &Cred::basic("mallory", "pa"), "service=wharf-test")
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn a_delete_needs_delete_in_the_token() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let t = token(
        s,
        &Cred::basic("alice", "pa"),
        &["repository:team-a/app:pull,push,delete"],
    )
    .await;
    assert_eq!(granted(&t)[0]["actions"], json!(["pull", "push"]));
    let alice = Cred::Bearer(t);
    let d = push_image(&c, &s.url(""), "team-a/app", "v1", &alice, 3).await.unwrap();
    let del = |cred: &Cred| cred.apply(c.delete(s.url(&format!("/v2/team-a/app/manifests/{d}"))));
    let r = del(&alice).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("scope=\"repository:team-a/app:delete\",error=\"insufficient_scope\""));
    let admin = Cred::Bearer(token(s, &Cred::basic("admin", "px"), &["repository:team-a/app:delete"]).await);
    assert_eq!(status(del(&admin)).await, 202);
}

#[tokio::test]
async fn tokens_for_another_repository_or_service_are_refused() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let alice = Cred::basic("alice", "pa");
    let t = Cred::Bearer(token(s, &alice, &["repository:team-a/app:pull,push"]).await);
    assert_eq!(push_image(&c, &s.url(""), "team-a/web", "v1", &t, 4).await, Err(401));
    assert_eq!(get_status(s, "/v2/team-a/web/tags/list", &t).await.0, 401);
    // the token server refuses another service
    let (st, body) = token_get(s, &alice, "service=other&scope=repository:team-a/app:pull").await;
    assert_eq!(st, 403, "{body}");
    // a token signed by the right key for another audience is refused by the registry
    let key = EncodingKey::from_ec_pem(i.key_pem.as_bytes()).unwrap();
    let other = sign(
        Algorithm::ES256,
        &key,
        &claims(ISSUER, "other", "alice", pull_push("team-a/app"), 300),
    );
    let (st, ch) = get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(other)).await;
    assert_eq!(st, 401);
    assert!(ch.ends_with("error=\"invalid_token\""), "{ch}");
    // and so is one from another issuer
    let other = sign(
        Algorithm::ES256,
        &key,
        &claims("evil", SERVICE, "alice", pull_push("team-a/app"), 300),
    );
    assert_eq!(
        get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(other)).await.0,
        401
    );
    // the same claims from the right issuer pass: the refusals above are about aud and iss
    let good = sign(
        Algorithm::ES256,
        &key,
        &claims(ISSUER, SERVICE, "alice", pull_push("team-a/app"), 300),
    );
    assert_eq!(
        get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(good)).await.0,
        404
    );
}

#[tokio::test]
async fn an_expired_token_replayed_is_refused() {
    let i = start_issuer("expiration = \"1s\"\nleeway = \"0s\"", RULES);
    let s = &i.s;
    let t = Cred::Bearer(token(s, &Cred::basic("bob", "pb"), &["repository:team-a/app:pull"]).await);
    assert_eq!(
        get_status(s, "/v2/team-a/app/tags/list", &t).await.0,
        404,
        "valid at first"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, ch) = get_status(s, "/v2/team-a/app/tags/list", &t).await;
    assert_eq!(st, 401);
    assert!(ch.contains("error=\"invalid_token\""), "{ch}");
}

#[tokio::test]
async fn tampered_none_hmac_and_untrusted_tokens_are_refused() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let t = token(s, &Cred::basic("bob", "pb"), &["repository:team-a/app:pull"]).await;
    let path = "/v2/team-a/app/blobs/uploads/";
    let try_push = |tok: String| {
        let rb = client().post(s.url(path)).bearer_auth(tok);
        async move {
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), challenge(&r))
        }
    };
    let parts: Vec<&str> = t.split('.').collect();
    // the genuine token has pull only
    assert_eq!(try_push(t.clone()).await.0, 401);
    // tampered payload: push added, signature kept
    let mut cl = part(&t, 1);
    cl["access"][0]["actions"] = json!(["pull", "push"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&serde_json::to_vec(&cl).unwrap()), parts[2]);
    let (st, ch) = try_push(tampered).await;
    assert_eq!(st, 401);
    assert!(ch.contains("invalid_token"), "{ch}");
    // alg none, with and without a signature
    let none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(&serde_json::to_vec(&cl).unwrap());
    assert_eq!(try_push(format!("{none}.{payload}.")).await.0, 401);
    assert_eq!(try_push(format!("{none}.{payload}.{}", parts[2])).await.0, 401);
    // HMAC keyed with the server's public key (the classic key-confusion attack)
    for secret in [
        i.public_pem.as_bytes().to_vec(),
        i.public_pem.trim().as_bytes().to_vec(),
    ] {
        let hmac = sign(Algorithm::HS256, &EncodingKey::from_secret(&secret).unwrap(), &cl);
        assert_eq!(try_push(hmac).await.0, 401);
    }
    // a key nobody trusts
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap();
    assert_eq!(try_push(sign(Algorithm::ES256, &key, &cl)).await.0, 401);
    // not a JWT at all
    assert_eq!(try_push("garbage".into()).await.0, 401);
    // the same claims signed by the real key do push: the refusals were about the tokens
    let key = EncodingKey::from_ec_pem(i.key_pem.as_bytes()).unwrap();
    let mut cl = claims(ISSUER, SERVICE, "alice", pull_push("team-a/app"), 300);
    cl["sub"] = json!("alice");
    assert_eq!(try_push(sign(Algorithm::ES256, &key, &cl)).await.0, 202);
}

#[tokio::test]
async fn the_catalog_needs_the_catalog_scope_and_is_filtered_by_the_rules() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let b = s.url("");
    let admin = Cred::basic("admin", "px");
    for (repo, seed) in [("team-a/app", 1), ("secret/db", 2), ("public/tool", 3)] {
        let t = Cred::Bearer(token(s, &admin, &[&format!("repository:{repo}:pull,push")]).await);
        push_image(&c, &b, repo, "v1", &t, seed).await.unwrap();
    }
    let alice = Cred::basic("alice", "pa");
    let without = Cred::Bearer(token(s, &alice, &["repository:team-a/app:pull"]).await);
    let r = without.apply(c.get(s.url("/v2/_catalog"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("scope=\"registry:catalog:*\",error=\"insufficient_scope\""));
    let with = Cred::Bearer(token(s, &alice, &["registry:catalog:*"]).await);
    assert_eq!(catalog(&c, &b, &with).await, vec!["public/tool", "team-a/app"]);
    let anon = Cred::Bearer(token(s, &Cred::None, &["registry:catalog:*"]).await);
    assert_eq!(catalog(&c, &b, &anon).await, vec!["public/tool"]);
    let all = Cred::Bearer(token(s, &admin, &["registry:catalog:*"]).await);
    assert_eq!(
        catalog(&c, &b, &all).await,
        vec!["public/tool", "secret/db", "team-a/app"]
    );
}

#[tokio::test]
async fn oauth2_password_and_refresh_token_grants() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let post = |form: &[(&str, &str)]| {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "+").replace(':', "%3A").replace('/', "%2F")))
            .collect::<Vec<_>>()
            .join("&");
        let rb = c
            .post(s.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let r = rb.send().await.unwrap();
            let st = r.status().as_u16();
            (
                st,
                serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
            )
        }
    };
    let (st, body) = post(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "pa"),
        ("service", SERVICE),
        ("client_id", "wharf-tests"),
        ("access_type", "offline"),
        ("scope", "repository:team-a/app:pull"),
    ])
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "repository:team-a/app:pull");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(access)).await.0,
        404
    );
    // the refresh token is not an access token
    assert_eq!(
        get_status(s, "/v2/team-a/app/tags/list", &Cred::Bearer(refresh.clone()))
            .await
            .0,
        401
    );
    // it buys new access tokens, for other scopes, for the same user
    let (st, body) = post(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", SERVICE),
        ("scope", "repository:team-a/app:pull,push repository:secret/db:pull"),
    ])
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["scope"], "repository:team-a/app:pull,push");
    assert_eq!(part(body["access_token"].as_str().unwrap(), 1)["sub"], "alice");
    // refusals
    let bad = [
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "no"),
            ("service", SERVICE),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "x.y.z"),
            ("service", SERVICE),
        ],
    ];
    for form in bad {
        assert_eq!(post(&form).await.0, 401, "{form:?}");
    }
    // an access token is not a refresh token
    let t = token(s, &Cred::basic("alice", "pa"), &[]).await;
    assert_eq!(
        post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t),
            ("service", SERVICE)
        ])
        .await
        .0,
        401
    );
    assert_eq!(post(&[("grant_type", "client_credentials")]).await.0, 400);
    // offline_token=true on GET returns a refresh token too
    let (_, body) = token_get(s, &Cred::basic("bob", "pb"), "service=wharf-test&offline_token=true").await;
    assert!(body["refresh_token"].as_str().is_some(), "{body}");
}

/// An external issuer: Wharf only verifies. Configured with the registry:2 variables.
fn start_external(bundle_pem: &str, file: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, bundle_pem).unwrap();
    let var = if file.ends_with(".json") {
        "REGISTRY_AUTH_TOKEN_JWKS"
    } else {
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE"
    };
    let s = Server::start_with(
        "",
        &[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://auth.example/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", SERVICE),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "external"),
            (var, path.to_str().unwrap()),
        ],
    );
    (s, dir)
}

#[tokio::test]
async fn an_external_issuer_trusted_by_certificate_public_key_or_jwks() {
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["auth.example".to_owned()])
        .unwrap()
        .self_signed(&ec)
        .unwrap();
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap();
    let c = client();
    let good = |alg, key: &EncodingKey| sign(alg, key, &claims("external", SERVICE, "ci", pull_push("apps/x"), 300));

    // a bundle with a certificate (EC) and a bare public key (RSA)
    let bundle = format!("{}{}", cert.pem(), rsa.public_key_pem());
    let (s, _d) = start_external(&bundle, "bundle.pem");
    let (st, ch) = get_status(&s, "/v2/apps/x/tags/list", &Cred::None).await;
    assert_eq!(st, 401);
    assert!(
        ch.starts_with("Bearer realm=\"https://auth.example/token\",service=\"wharf-test\""),
        "{ch}"
    );
    for tok in [good(Algorithm::ES256, &ec_key), good(Algorithm::RS256, &rsa_key)] {
        let t = Cred::Bearer(tok);
        push_image(&c, &s.url(""), "apps/x", "v1", &t, 5).await.unwrap();
        assert_eq!(get_status(&s, "/v2/apps/x/manifests/v1", &t).await.0, 200);
        assert_eq!(push_image(&c, &s.url(""), "apps/y", "v1", &t, 5).await, Err(401));
    }
    // its tokens for another service, from another issuer, expired, or algorithm-swapped fail
    let refused = [
        sign(
            Algorithm::ES256,
            &ec_key,
            &claims("external", "other", "ci", pull_push("apps/x"), 300),
        ),
        sign(
            Algorithm::ES256,
            &ec_key,
            &claims("wharf", SERVICE, "ci", pull_push("apps/x"), 300),
        ),
        sign(
            Algorithm::ES256,
            &ec_key,
            &claims("external", SERVICE, "ci", pull_push("apps/x"), -3600),
        ),
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(rsa.public_key_pem().as_bytes()).unwrap(),
            &claims("external", SERVICE, "ci", pull_push("apps/x"), 300),
        ),
    ];
    for tok in refused {
        assert_eq!(get_status(&s, "/v2/apps/x/tags/list", &Cred::Bearer(tok)).await.0, 401);
    }
    // Wharf is not an issuer here
    assert_eq!(status(c.get(s.url("/token?service=wharf-test"))).await, 404);
    drop(s);

    // the same RSA key as a JWKS
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa_key, Algorithm::RS256).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = json!("rsa-1");
    let (s, _d) = start_external(&json!({"keys": [jwk]}).to_string(), "jwks.json");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    let tok = jsonwebtoken::encode(
        &h,
        &claims("external", SERVICE, "ci", pull_push("apps/x"), 300),
        &rsa_key,
    )
    .unwrap();
    assert_eq!(get_status(&s, "/v2/apps/x/tags/list", &Cred::Bearer(tok)).await.0, 404);
    assert_eq!(
        get_status(
            &s,
            "/v2/apps/x/tags/list",
            &Cred::Bearer(good(Algorithm::ES256, &ec_key))
        )
        .await
        .0,
        401
    );
}

/// The token endpoint shares the failed-login limits of Basic auth: wrong passwords by GET
/// (Basic) and by POST (`grant_type=password`) count together, and once `maxfailures` (5) is
/// reached both answer 429 TOOMANYREQUESTS with Retry-After at once, the right password too;
/// another user is not affected.
#[tokio::test]
async fn failed_logins_at_the_token_endpoint_are_limited_by_get_and_post_together() {
    let i = start_issuer("", "[auth.login]\nwindow = \"1h\"\n");
    let s = &i.s;
    let c = client();
    let post = |user: &str, password: &str| {
        c.post(s.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=password&service={SERVICE}&username={user}&password={password}"
            ))
            .send()
    };
    let get = |user: &str, password: &str| {
        c.get(s.url(&format!("/token?service={SERVICE}")))
            .basic_auth(user, Some(password))
            .send()
    };
    for n in 0..5 {
        let r = if n % 2 == 0 {
            get("alice", "guess").await
        } else {
            post("alice", "guess").await
        }
        .unwrap();
        assert_eq!(r.status(), 401, "guess {n}");
    }
    for r in [
        get("alice", "guess").await,
        post("alice", "guess").await,
        get("alice", "pa").await,
        post("alice", "pa").await,
    ] {
        let r = r.unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), vec!["TOOMANYREQUESTS"]);
    }
    assert_eq!(get("bob", "pb").await.unwrap().status(), 200);
    assert_eq!(post("bob", "pb").await.unwrap().status(), 200);
}

/// A refresh token is bound to the credential it was issued for: once the user's password
/// changes in the htpasswd file (re-read without a restart) or the user is removed, it mints
/// nothing (401); other users' refresh tokens keep working, and a login with the new password
/// gets a refresh token that works.
#[tokio::test]
async fn a_refresh_token_ends_when_the_password_changes_or_the_user_is_removed() {
    let i = start_issuer("", RULES);
    let s = &i.s;
    let c = client();
    let form = |pairs: &[(&str, &str)]| {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A").replace('/', "%2F")))
            .collect::<Vec<_>>()
            .join("&");
        c.post(s.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let login = |user: &'static str, password: &'static str| async move {
        let r = form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("service", SERVICE),
            ("access_type", "offline"),
        ])
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        body["refresh_token"].as_str().unwrap().to_owned()
    };
    let refresh = |token: String| async move {
        let r = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &token),
            ("service", SERVICE),
            ("scope", "repository:team-a/app:pull"),
        ])
        .await
        .unwrap();
        r.status().as_u16()
    };
    let alice = login("alice", "pa").await;
    let bob = login("bob", "pb").await;
    assert_eq!(refresh(alice.clone()).await, 200);
    // the admin changes alice's password; bob's line stays as it was
    let path = i._dir.path().join("htpasswd");
    // the file's current lines but those of `user`
    let without = |user: &str| -> String {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(&format!("{user}:")))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let write = |text: String| {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(format!("{}{}", without("alice"), htpasswd(&[("alice", "new-pa")])));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refresh(alice.clone()).await == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh token outlived the password"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(refresh(alice.clone()).await, 401);
    assert_eq!(refresh(bob.clone()).await, 200, "bob's credential did not change");
    let alice2 = login("alice", "new-pa").await;
    assert_eq!(refresh(alice2).await, 200);
    // bob is removed
    write(without("bob"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refresh(bob.clone()).await == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh token outlived its user"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(refresh(bob).await, 401);
}

/// The realm in challenges comes from configuration, never from the client's `Host` header:
/// `http.host` + `/token` when set (registry:2's key), else the address the client connected
/// to, with a warning at start-up; a malformed `http.host` stops start-up naming the key.
#[tokio::test]
async fn the_token_realm_comes_from_configuration_not_from_the_host_header() {
    let evil = |s: &Server| {
        client()
            .get(s.url("/v2/team-a/app/tags/list"))
            .header("host", "evil.example:666")
            .send()
    };
    let i = start_issuer("", "");
    let r = evil(&i.s).await.unwrap();
    assert_eq!(r.status(), 401);
    let ch = challenge(&r);
    assert!(
        ch.starts_with(&format!("Bearer realm=\"http://{}/token\",", i.s.addr)),
        "{ch}"
    );
    assert!(!ch.contains("evil"), "{ch}");
    assert!(
        i.s.logs()
            .iter()
            .any(|l| l.contains("neither auth.token.realm nor http.host is set")),
        "no start-up warning"
    );
    drop(i);

    let i = start_issuer_env("", "", &[("REGISTRY_HTTP_HOST", "https://registry.example.com/")]);
    let ch = challenge(&evil(&i.s).await.unwrap());
    assert!(
        ch.starts_with("Bearer realm=\"https://registry.example.com/token\",service="),
        "{ch}"
    );
    assert!(!i.s.logs().iter().any(|l| l.contains("neither auth.token.realm")));
    drop(i);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["check-config"])
        .env("REGISTRY_HTTP_HOST", "registry.example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.host"));
}
